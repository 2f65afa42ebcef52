"""Bring-your-own embeddings: a .npz with X_train, y_train, X_test, y_test and optional class_names."""

from __future__ import annotations

import hashlib
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imprint_bench.errors import ConfigError

if TYPE_CHECKING:
    from imprint_bench.data.base import FeatureSet

REQUIRED_KEYS = ("X_train", "y_train", "X_test", "y_test")
ZIP_SIGNATURE = b"PK\x03\x04"  # every .npz (numpy.savez, savez_compressed) is a zip archive


def _array(data: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    """One array of the archive; object (pickled) arrays are refused with the file and key named."""
    try:
        return data[key]
    except ValueError as err:
        if "allow_pickle" in str(err):  # numpy's refusal to unpickle
            raise ConfigError(f"features file {path}: {key} is an object array, which is never unpickled here; "
                              f"save {key} as a numeric (or, for class_names, string) array") from err
        raise ConfigError(f"features file {path}: {key} cannot be read ({err}); the archive member is truncated or "
                          "damaged: write the file again") from err
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise ConfigError(f"features file {path}: {key} cannot be read ({err}); the archive is damaged") from err


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (the feature file's cache identity)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_npz_file(path: str | Path) -> None:
    """Cheap checks before any work (the sweeper runs them while planning): the file exists, is a .npz with
    the required keys, holds no object arrays, and its splits have matching lengths. Reads only the headers."""
    if not path or str(path) == "???":
        raise ConfigError(f"dataset.path must name a .npz with keys {', '.join(REQUIRED_KEYS)} (dataset.path=emb.npz)")
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"features file {path} does not exist (set dataset.path to a .npz with keys {', '.join(REQUIRED_KEYS)})"
        )
    with path.open("rb") as f:
        signature = f.read(4)
    if signature != ZIP_SIGNATURE:
        what = "is empty" if not signature else "is not a .npz (zip) archive"
        raise ConfigError(f"features file {path} {what}; write it with numpy.savez(path, X_train=..., y_train=..., "
                          "X_test=..., y_test=...)")
    headers = {}
    try:
        with zipfile.ZipFile(path) as archive:
            names = {n.removesuffix(".npy") for n in archive.namelist()}
            missing = [k for k in REQUIRED_KEYS if k not in names]
            if missing:
                raise ConfigError(f"features file {path} lacks keys {missing}; it has {sorted(names)}, needs "
                                  f"{list(REQUIRED_KEYS)} (optional: class_names)")
            for key in [*REQUIRED_KEYS, *(["class_names"] if "class_names" in names else [])]:
                with archive.open(f"{key}.npy") as f:
                    version = np.lib.format.read_magic(f)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else (
                        np.lib.format.read_array_header_2_0)
                    headers[key] = read(f)  # (shape, fortran order, dtype)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ConfigError(f"features file {path} is not a readable .npz: {err}") from err
    for key, (_, _, dtype) in headers.items():
        if dtype.hasobject:
            raise ConfigError(f"features file {path}: {key} is an object array, which is never unpickled here; "
                              f"save {key} as a numeric (or, for class_names, string) array")
    for split in ("train", "test"):
        (x_shape, _, _), (y_shape, _, _) = headers[f"X_{split}"], headers[f"y_{split}"]
        if len(x_shape) != 2 or len(y_shape) != 1 or x_shape[0] != y_shape[0]:
            raise ConfigError(f"features file {path}: X_{split} must be [n, dim] with one label per row in "
                              f"y_{split} [n]; got X_{split} {x_shape} and y_{split} {y_shape}")
        if x_shape[0] == 0:
            raise ConfigError(f"features file {path}: X_{split} has no rows")
    if "class_names" in headers:
        _check_class_names(path, headers)


def _check_class_names(path: Path, headers: dict) -> None:
    """One distinct name per label (reads the labels and names only, which are small)."""
    with np.load(path, allow_pickle=False) as data:
        names = [str(c) for c in data["class_names"]]
        top = max(int(data[k].max(initial=-1)) for k in ("y_train", "y_test") if headers[k][2].kind in "iuf")
    if len(names) < top + 1:
        raise ConfigError(f"features file {path}: class_names has {len(names)} names but the labels go up to "
                          f"{top}; give one name per label 0..{top} (or drop class_names)")
    duplicates = sorted({c for c in names if names.count(c) > 1})
    if duplicates:
        raise ConfigError(f"features file {path}: class_names repeats {duplicates}; each class needs its own name")


def stored_labels(path: str | Path) -> dict[str, str]:
    """Optional ``name`` and ``backbone`` entries of a features file (0-d string arrays): the labels its rows get
    unless the config sets ``dataset.name`` / ``dataset.backbone``."""
    with np.load(Path(path).expanduser(), allow_pickle=False) as data:
        return {k: str(data[k]) for k in ("name", "backbone") if k in data.files and data[k].dtype.kind in "US"}


def load_npz_features(path: str | Path) -> FeatureSet:
    """Read and validate a features file; every error names the file and the problem."""
    import torch

    from imprint_bench.data.base import FeatureSet

    path = Path(path).expanduser()
    check_npz_file(path)
    # the file's checksum (its cache identity) is computed on a thread of its own while the arrays are decoded here:
    # reading and SHA-256 release the GIL, so the two overlap (a quarter less time for a sweep's five feature sets)
    hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="npz-digest")
    digest = hashing.submit(file_digest, path)
    hashing.shutdown(wait=False)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ConfigError(f"features file {path} is not a readable .npz: {err}") from err
    with data:
        missing = [k for k in REQUIRED_KEYS if k not in data.files]
        if missing:
            raise ConfigError(
                f"features file {path} lacks keys {missing}; it has {data.files}, needs "
                f"{list(REQUIRED_KEYS)} (optional: class_names)"
            )
        arrays = {k: _array(data, k, path) for k in REQUIRED_KEYS}
        class_names = [str(c) for c in _array(data, "class_names", path)] if "class_names" in data.files else []
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
        key=f"npz-{digest.result()[:24]}",
        source=str(path),
    )
