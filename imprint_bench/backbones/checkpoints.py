"""Local weight files: reading state dicts, stripping classifier heads, content checksums, offline mode."""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from imprint_bench.errors import ConfigError


def offline() -> bool:
    """True when downloads must not be attempted (``HF_HUB_OFFLINE=1``, which the project sets in CI)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def checkpoint_path(value: object) -> Path:
    """Validate ``backbone.checkpoint`` and return it as an absolute path."""
    path = Path(str(value)).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(
            f"backbone.checkpoint={value!r}: no such file ({path}); give the path of a .pth/.pt/.bin or "
            ".safetensors state dict"
        )
    return path


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's content, read in 16 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_sha256(path: Path) -> str:
    """:func:`sha256_file` of a weights file, memoised per path, size and modification time."""
    stat = path.stat()
    return _checkpoint_sha256(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _checkpoint_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(Path(path))


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors or torch checkpoint (unwraps ``state_dict``/``model`` and ``module.``)."""
    try:
        from timm.models import load_state_dict  # timm only when a checkpoint is read (it imports wandb)

        return load_state_dict(str(path), weights_only=True)
    except Exception as err:  # torch/safetensors raise many types for unreadable files
        raise ConfigError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from err


def without_head(state_dict: Mapping[str, torch.Tensor], heads: Iterable[str]) -> dict[str, torch.Tensor]:
    """Drop the classifier-head entries (``head`` or ``head.*`` for each name in ``heads``)."""
    heads = tuple(heads)
    return {
        key: value
        for key, value in state_dict.items()
        if not any(key == head or key.startswith(head + ".") for head in heads)
    }


def load_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str) -> None:
    """``load_state_dict(strict=True)`` whose error names the source and the first mismatching keys."""
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        message = str(err).split("\n\t", 3)
        raise ConfigError(f"{what} does not fit the model: {' '.join(message[:3])[:1500]}") from err
