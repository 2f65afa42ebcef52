"""Backbone registry: a ``backbone`` config → frozen feature extractor, its eval transform and its identity.

Sources (``backbone.source``):

- ``torchvision``: the paper's ``resnet18``, ``resnet50``, ``vit_b_16``, ``swin_b`` (any torchvision
  classifier with an ``fc``/``heads``/``head`` attribute), ``IMAGENET1K_V1`` weights, the weights' own
  transform (:mod:`.torchvision_models`);
- ``timm``: any timm model, timm's resolved data config (:mod:`.timm_models`);
- ``effnet_lite``: ``efficientnet_lite0/1/2`` with the ImageNet weights of the PyPI packages (:mod:`.effnet_lite`);
- ``pixels``: flattened raw pixels (:mod:`.pixels`).

Fields every backbone config may set: ``name`` (model name, also the results' backbone label),
``source``, ``pretrained``, ``checkpoint`` (local weights file), ``init_seed`` (random init),
``ls_lambda`` (ridge λ of the least-squares oracle, used downstream), and transform overrides
``resize``, ``crop``, ``interpolation``, ``mean``, ``std`` (``null`` = the model's own).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from imprint_bench.data.transforms import Preprocess
from imprint_bench.errors import ConfigError, check_choice


@dataclass(frozen=True)
class BackboneSource:
    """How one ``backbone.source`` provides its eval transform, weights identity and model."""

    preprocess: Callable[[Mapping], Preprocess]
    weights_identity: Callable[[Mapping], dict | None]  # None = random init
    build: Callable[[Mapping], nn.Module]


#: ``backbone.source`` → the module that provides it, imported on first use: a job on precomputed features, or on
#: raw pixels, never imports timm (which imports wandb and leaves temporary folders behind) or torchvision's models.
SOURCES: dict[str, str] = {
    "torchvision": "imprint_bench.backbones.torchvision_models",
    "timm": "imprint_bench.backbones.timm_models",
    "effnet_lite": "imprint_bench.backbones.effnet_lite",
    "pixels": "imprint_bench.backbones.pixels",
}

TRANSFORM_OVERRIDES = ("resize", "crop", "interpolation", "mean", "std")


@dataclass
class Backbone:
    """A frozen model mapping a preprocessed batch ``[B, C, H, W]`` to features ``[B, d]``."""

    name: str
    model: nn.Module
    preprocess: Preprocess


def _source(cfg: Mapping) -> BackboneSource:
    if not cfg.get("name"):
        raise ConfigError(
            "backbone.name is missing; e.g. backbone=resnet18, or backbone=timm backbone.name=vit_small_patch16_224"
        )
    check_choice("backbone.source", cfg.get("source"), SOURCES)
    module = importlib.import_module(SOURCES[cfg["source"]])
    return BackboneSource(module.preprocess, module.weights_identity, module.build)


def backbone_preprocess(cfg: Mapping) -> Preprocess:
    """The backbone's eval transform, with any of ``resize/crop/interpolation/mean/std`` overridden."""
    own = _source(cfg).preprocess(cfg)
    overrides = {field: cfg[field] for field in TRANSFORM_OVERRIDES if cfg.get(field) is not None}
    for field in ("mean", "std"):
        if field in overrides:
            overrides[field] = tuple(float(value) for value in overrides[field])
    return dataclasses.replace(own, **overrides)


def backbone_identity(cfg: Mapping) -> dict:
    """Everything about the backbone that changes its features (for cache keys), without building it."""
    weights = _source(cfg).weights_identity(cfg)
    return {
        "source": cfg["source"],
        "name": cfg["name"],
        "weights": weights if weights is not None else {"random_init_seed": int(cfg.get("init_seed") or 0)},
        "preprocess": backbone_preprocess(cfg).describe(),
    }


def load_backbone(cfg: Mapping, device: torch.device | str = "cpu") -> Backbone:
    """Build the backbone in eval mode without gradients on ``device``; random init is seeded by ``init_seed``."""
    source = _source(cfg)
    preprocess = backbone_preprocess(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg.get("init_seed") or 0))
        model = source.build(cfg)
    return Backbone(str(cfg["name"]), model.eval().requires_grad_(False).to(device), preprocess)


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; otherwise the named device (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but CUDA is not available here; use device=cpu or device=auto")
    return device
