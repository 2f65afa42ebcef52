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
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from imprint_bench.backbones import effnet_lite, pixels, timm_models, torchvision_models
from imprint_bench.data.transforms import Preprocess
from imprint_bench.errors import ConfigError, check_choice


@dataclass(frozen=True)
class BackboneSource:
    """How one ``backbone.source`` provides its eval transform, weights identity and model."""

    preprocess: Callable[[Mapping], Preprocess]
    weights_identity: Callable[[Mapping], dict | None]  # None = random init
    build: Callable[[Mapping], nn.Module]


SOURCES: dict[str, BackboneSource] = {
    name: BackboneSource(module.preprocess, module.weights_identity, module.build)
    for name, module in (
        ("torchvision", torchvision_models),
        ("timm", timm_models),
        ("effnet_lite", effnet_lite),
        ("pixels", pixels),
    )
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
    return SOURCES[cfg["source"]]


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
