"""Raw pixels as features (no network): the image scaled to [0, 1] and flattened, a baseline for imprinting.

``backbone.resize`` (and ``backbone.crop``) set a common size; by default images keep their native size
and channels, so MNIST gives 784-d features and CIFAR-10 3,072-d ones.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from imprint_bench.data.transforms import Preprocess


def preprocess(cfg: Mapping) -> Preprocess:
    """Native size and channels, values in [0, 1] (mean 0, std 1)."""
    return Preprocess(resize=None, crop=None, interpolation="bilinear", mean=(0.0,), std=(1.0,), to_rgb=False)


def weights_identity(cfg: Mapping) -> dict:
    """Pixels have no weights."""
    return {}


def build(cfg: Mapping) -> nn.Module:
    """Flatten ``[B, C, H, W]`` to ``[B, C*H*W]``."""
    return nn.Flatten()
