"""torchvision classification models (the paper's resnet18, resnet50, vit_b_16, swin_b) with their head removed.

Weights are the torchvision enum named by ``backbone.weights`` (``IMAGENET1K_V1`` for the paper), read
from the torch hub cache (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``),
or any local state dict given as ``backbone.checkpoint``. The eval transform is always the weights' own
(``weights.transforms()``), also for random init, so features of random and pretrained models are
comparable.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision.models import WeightsEnum

from imprint_bench.backbones.checkpoints import (
    checkpoint_path,
    checkpoint_sha256,
    load_strict,
    offline,
    read_state_dict,
    without_head,
)
from imprint_bench.data.transforms import Preprocess
from imprint_bench.errors import ConfigError

#: Attribute names of the classifier head, in the order they are looked for (ResNet: fc, ViT: heads, Swin: head).
HEAD_ATTRIBUTES = ("fc", "heads", "head")


def weights_enum(cfg: Mapping) -> WeightsEnum:
    """The torchvision weights entry for ``cfg.name`` / ``cfg.weights``."""
    name = cfg["name"]
    try:
        weights_class = torchvision.models.get_model_weights(name)
    except ValueError as err:
        valid = ", ".join(torchvision.models.list_models(module=torchvision.models))
        raise ConfigError(f"unknown torchvision classification model {name!r}; valid names: {valid}") from err
    tag = cfg.get("weights") or "IMAGENET1K_V1"
    try:
        return weights_class[tag]
    except KeyError as err:
        valid = ", ".join(member.name for member in weights_class)
        raise ConfigError(f"torchvision model {name!r} has no weights {tag!r}; valid: {valid}") from err


def preprocess(cfg: Mapping) -> Preprocess:
    """The weights' own ``ImageClassification`` transform (e.g. resize 256 bilinear, crop 224)."""
    transform = weights_enum(cfg).transforms()
    return Preprocess(
        resize=int(transform.resize_size[0]),
        crop=int(transform.crop_size[0]),
        interpolation=transform.interpolation.value,
        mean=tuple(transform.mean),
        std=tuple(transform.std),
    )


def weights_identity(cfg: Mapping) -> dict | None:
    """What identifies the weights: the checkpoint's checksum or the torchvision weights file (None: random)."""
    if cfg.get("checkpoint"):
        return {"checkpoint_sha256": checkpoint_sha256(checkpoint_path(cfg["checkpoint"]))}
    if cfg.get("pretrained", True):
        weights = weights_enum(cfg)
        return {"weights": str(weights), "file": _hub_filename(weights.url)}
    return None


def build(cfg: Mapping) -> nn.Module:
    """The model with its classifier head replaced by ``Identity``, weights loaded strictly."""
    name = cfg["name"]
    model = torchvision.models.get_model(name, weights=None)
    head = next((attr for attr in HEAD_ATTRIBUTES if isinstance(getattr(model, attr, None), nn.Module)), None)
    if head is None:
        raise ConfigError(
            f"torchvision model {name!r} has no classifier attribute among {HEAD_ATTRIBUTES}; "
            "use backbone=timm backbone.name=<model> for other architectures"
        )
    setattr(model, head, nn.Identity())
    if cfg.get("checkpoint"):
        path = checkpoint_path(cfg["checkpoint"])
        load_strict(model, without_head(read_state_dict(path), [head]), f"checkpoint {path}")
    elif cfg.get("pretrained", True):
        path = _cached_weights_file(weights_enum(cfg))
        load_strict(model, without_head(read_state_dict(path), [head]), f"weights file {path}")
    return model


def _hub_filename(url: str) -> str:
    return Path(urlparse(url).path).name


def _cached_weights_file(weights: WeightsEnum) -> Path:
    """The weights file in the torch hub cache, downloaded there first unless offline."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / _hub_filename(weights.url)
    if path.is_file():
        return path
    advice = (
        f"torchvision weights {weights} are not in the torch hub cache. Put {weights.url} at {path} "
        "(set TORCH_HOME to use another cache directory), or pass backbone.checkpoint=/path/to/weights.pth, "
        "or use backbone.pretrained=false for random init"
    )
    if offline():
        raise ConfigError(advice + " (no download attempted: HF_HUB_OFFLINE is set)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(weights.url, str(path), progress=False)
    except OSError as err:  # URLError and socket errors are OSErrors
        raise ConfigError(f"{advice} (download failed: {err})") from err
    return path
