"""Bring-your-own embeddings: a .npz with X_train, y_train, X_test, y_test and optional class_names."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from imprint_bench.data.base import FeatureSet
from imprint_bench.errors import ConfigError

REQUIRED_KEYS = ("X_train", "y_train", "X_test", "y_test")


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (the feature file's cache identity)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_npz_features(path: str | Path) -> FeatureSet:
    """Read and validate a features file; every error names the file and the problem."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"features file {path} does not exist (set dataset.path to a .npz with keys {', '.join(REQUIRED_KEYS)})"
        )
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ConfigError(f"features file {path} is not a readable .npz: {err}") from err
    with data:
        missing = [k for k in REQUIRED_KEYS if k not in data.files]
        if missing:
            raise ConfigError(
                f"features file {path} lacks keys {missing}; it has {data.files}, needs "
                f"{list(REQUIRED_KEYS)} (optional: class_names)"
            )
        arrays = {k: data[k] for k in REQUIRED_KEYS}
        class_names = [str(c) for c in data["class_names"]] if "class_names" in data.files else []
    for split in ("train", "test"):
        x, y = arrays[f"X_{split}"], arrays[f"y_{split}"]
        if not np.issubdtype(x.dtype, np.number):
            raise ConfigError(f"features file {path}: X_{split} must be numeric, got dtype {x.dtype}")
        if not np.issubdtype(y.dtype, np.integer):
            if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
                arrays[f"y_{split}"] = y.astype(np.int64)
            else:
                raise ConfigError(f"features file {path}: y_{split} must hold integer class labels, got {y.dtype}")
        if arrays[f"y_{split}"].size and arrays[f"y_{split}"].min() < 0:
            raise ConfigError(f"features file {path}: y_{split} has negative labels; labels must be >= 0")
    return FeatureSet(
        torch.from_numpy(np.asarray(arrays["X_train"], dtype=np.float32)),
        torch.from_numpy(np.asarray(arrays["y_train"], dtype=np.int64)),
        torch.from_numpy(np.asarray(arrays["X_test"], dtype=np.float32)),
        torch.from_numpy(np.asarray(arrays["y_test"], dtype=np.int64)),
        class_names,
        key=f"npz-{file_digest(path)[:24]}",
        source=str(path),
    )
