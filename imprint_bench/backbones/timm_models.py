"""Any timm model (``backbone=timm backbone.name=<model>``): pooled pre-logits features (``num_classes=0``).

Weights come from the Hugging Face cache (``pretrained: true``), a local file (``backbone.checkpoint``,
loaded through timm's own pretrained loader, so its checkpoint filters apply), or random init. The eval
transform is timm's resolved data config (``resolve_data_config`` + ``create_transform`` semantics).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import timm
from timm.data import resolve_data_config
from torch import nn

from imprint_bench.backbones.checkpoints import checkpoint_path, checkpoint_sha256
from imprint_bench.data.transforms import Preprocess
from imprint_bench.errors import ConfigError


def model_name(cfg: Mapping) -> str:
    """``cfg.name`` checked against timm's registry (the error lists similar names)."""
    name = cfg["name"]
    if not timm.is_model(name):
        words = [word for word in re.split(r"[^a-z0-9]+", str(name).split(".")[0].lower()) if word]
        similar = timm.list_models(f"*{'*'.join(words)}*")[:20] if words else []
        hint = f"similar names: {', '.join(similar)}" if similar else "see timm.list_models()"
        raise ConfigError(f"unknown timm model {name!r}; {hint}")
    return name


def preprocess(cfg: Mapping) -> Preprocess:
    """timm's eval transform for the model: resize to ``floor(size / crop_pct)``, centre crop ``size``."""
    pretrained_cfg = timm.models.get_pretrained_cfg(model_name(cfg))
    data = resolve_data_config(pretrained_cfg=pretrained_cfg.to_dict() if pretrained_cfg else {"num_classes": 0})
    _, height, width = data["input_size"]
    crop_mode = data.get("crop_mode") or "center"
    if height != width or crop_mode not in ("center", "squash"):
        raise ConfigError(
            f"timm model {cfg['name']!r}: input size {height}x{width} with crop_mode {crop_mode!r} is not "
            "supported; set backbone.resize and backbone.crop to use a square centre crop"
        )
    return Preprocess(
        resize=math.floor(height / data["crop_pct"]),
        crop=height,
        interpolation=data["interpolation"],
        mean=tuple(data["mean"]),
        std=tuple(data["std"]),
        keep_aspect=crop_mode == "center",
    )


def weights_identity(cfg: Mapping) -> dict | None:
    """The checkpoint's checksum or the pretrained tag timm resolves for the name (None: random init)."""
    if cfg.get("checkpoint"):
        return {"checkpoint_sha256": checkpoint_sha256(checkpoint_path(cfg["checkpoint"]))}
    if cfg.get("pretrained", True):
        pretrained_cfg = timm.models.get_pretrained_cfg(model_name(cfg))
        return {"weights": f"{pretrained_cfg.architecture}.{pretrained_cfg.tag}" if pretrained_cfg else "default"}
    return None


def build(cfg: Mapping) -> nn.Module:
    """``timm.create_model(name, num_classes=0)`` with weights from the checkpoint, the HF cache, or none."""
    name = model_name(cfg)
    if cfg.get("checkpoint"):
        path = checkpoint_path(cfg["checkpoint"])
        try:
            return timm.create_model(name, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": str(path)})
        except (RuntimeError, KeyError, ValueError) as err:
            raise ConfigError(f"checkpoint {path} does not fit timm model {name!r}: {err}") from err
    if not cfg.get("pretrained", True):
        return timm.create_model(name, pretrained=False, num_classes=0)
    try:
        return timm.create_model(name, pretrained=True, num_classes=0)
    except Exception as err:  # huggingface_hub / urllib raise many types when offline
        raise ConfigError(
            f"pretrained weights for timm model {name!r} are not available ({type(err).__name__}: {err}). "
            "Put them in the Hugging Face cache (HF_HOME, default ~/.cache/huggingface; e.g. run "
            f"timm.create_model({name!r}, pretrained=True) once with internet access), or pass "
            "backbone.checkpoint=/path/to/weights.safetensors (or .pth), or use backbone.pretrained=false"
        ) from err
