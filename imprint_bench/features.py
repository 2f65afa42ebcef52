"""Embeddings of a (backbone, image dataset) pair, computed once and then read from a content-keyed cache.

Cache layout: ``<cache_dir>/features/<key>/`` holds memory-mappable ``train_x.npy``, ``train_y.npy``,
``test_x.npy``, ``test_y.npy`` and ``meta.json`` (shapes, dtypes, SHA-256 of each file, class names,
library versions and the description the key hashes). The key hashes everything that changes the
numbers: backbone and weights identity (checkpoint checksum), its transform, the dataset config
(kind, split options, mapping, subset) and, for file datasets, a digest of the file listing, the compute
dtype and the torch/torchvision/timm/Pillow versions.

Entries are written to a temporary folder and renamed into place; a file lock (``<key>.lock``) makes
concurrent jobs wait for one extraction; an entry whose checksums do not match is re-extracted with a
warning; an in-process memo avoids re-reading in sequential Hydra jobs.

A label remapping without a subset (ImageNet ``map{d}-{v}``, CombiDigits ``combined``) is served from one
extraction of the unmapped dataset, so the 100 ImageNet mappings share the 145 focus classes' features.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock, Timeout
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from imprint_bench.backbones import Backbone, backbone_identity, load_backbone
from imprint_bench.backbones.checkpoints import sha256_file
from imprint_bench.data import SPLITS
from imprint_bench.data.base import FeatureSet
from imprint_bench.data.containers import ImageArray, ImageFileDataset, ImagePart, ImageSplit
from imprint_bench.data.extract_settings import ExtractSettings
from imprint_bench.data.mappings import mapping_name, resolve_label_map
from imprint_bench.data.subsets import Subset
from imprint_bench.data.transforms import Preprocess
from imprint_bench.errors import ConfigError, check_writable_folder
from imprint_bench.identity import content_key, runtime_versions

log = logging.getLogger(__name__)

#: Bump when the extraction semantics change, so that old cache entries are not reused.
CACHE_FORMAT = 1
ARRAY_NAMES = tuple(f"{split}_{array}" for split in SPLITS for array in ("x", "y"))
#: Dataset fields that do not change the numbers (results label, download permission).
LABEL_ONLY_DATASET_FIELDS = ("name", "download")
MEMO_SIZE = 4

_memo: OrderedDict[str, CachedFeatures] = OrderedDict()
_memo_lock = threading.Lock()


@dataclass
class CachedFeatures:
    """The four arrays of a cache entry and the class names its labels index."""

    arrays: dict[str, np.ndarray]
    class_names: list[str]


@dataclass(frozen=True)
class FeatureRequest:
    """A resolved request: what to extract, under which key, and whether a label map is applied afterwards."""

    dataset: dict
    backbone: dict
    settings: ExtractSettings
    derive_mapping: bool  # extract the unmapped dataset once, then apply ``dataset.mapping`` to the features
    extraction_key: str
    key: str
    description: dict

    @property
    def label(self) -> str:
        """Human description of the feature set (FeatureSet.source, progress bars)."""
        dataset = self.dataset.get("name") or self.dataset["kind"]
        details = [f"mapping {self.dataset['mapping']}"] if self.dataset.get("mapping") else []
        subset = Subset.from_cfg(self.dataset.get("subset"))
        if not subset.is_full:
            per_class = " per class" if subset.per_class else ""
            details.append(f"subset train={subset.train} test={subset.test}{per_class} seed={subset.seed}")
        suffix = f" ({', '.join(details)})" if details else ""
        return f"{self.backbone['name']} features of {dataset}{suffix}"


def extract_feature_set(
    dataset_cfg: Mapping,
    backbone_cfg: Mapping,
    extract_cfg: ExtractSettings | Mapping,
    cache_dir: Path,
    data_root: Path,
    device: torch.device,
) -> FeatureSet:
    """Embeddings of an image dataset (float32 features, int64 labels in the dataset's label space) on
    ``device``; extracted on the first request, then read from ``cache_dir`` (or the in-process memo)."""
    device = torch.device(device)
    request = plan_features(dataset_cfg, backbone_cfg, extract_cfg, data_root, device)
    cached = _cached_features(request, Path(cache_dir), Path(data_root), device)
    arrays, class_names = cached.arrays, cached.class_names
    if request.derive_mapping:
        label_map = resolve_label_map(request.dataset, class_names)
        arrays = {}
        for split in SPLITS:
            rows, labels = label_map.apply(np.asarray(cached.arrays[f"{split}_y"]))
            arrays[f"{split}_x"], arrays[f"{split}_y"] = cached.arrays[f"{split}_x"][rows], labels
        class_names = label_map.class_names
    tensors = {name: torch.from_numpy(np.array(arrays[name])).to(device) for name in ARRAY_NAMES}
    return FeatureSet(
        tensors["train_x"].float(),
        tensors["train_y"].long(),
        tensors["test_x"].float(),
        tensors["test_y"].long(),
        list(class_names),
        request.key,
        request.label,
    )


def fill_feature_cache(
    dataset_cfg: Mapping,
    backbone_cfg: Mapping,
    extract_cfg: ExtractSettings | Mapping,
    cache_dir: Path,
    data_root: Path,
    device: torch.device,
) -> str:
    """Make sure the cache holds the features of this pair (``mode=extract``, ahead of a sweep); returns the
    key :func:`extract_feature_set` will give the feature set."""
    device = torch.device(device)
    request = plan_features(dataset_cfg, backbone_cfg, extract_cfg, data_root, device)
    _cached_features(request, Path(cache_dir), Path(data_root), device)
    return request.key


def plan_features(
    dataset_cfg: Mapping, backbone_cfg: Mapping, extract_cfg: ExtractSettings | Mapping, data_root: Path,
    device: torch.device
) -> FeatureRequest:
    """Validate the configs and compute the cache keys, without loading images or building the model."""
    dataset, backbone = _plain(dataset_cfg), _plain(backbone_cfg)
    settings = _settings(extract_cfg)
    subset = Subset.from_cfg(dataset.get("subset"))
    mapping = mapping_name(dataset)
    derive_mapping = mapping is not None and subset.is_full
    extracted = {field: value for field, value in dataset.items() if field not in LABEL_ONLY_DATASET_FIELDS}
    extracted.update(subset=subset.describe(), mapping=None if derive_mapping else mapping)
    from imprint_bench.data.images import dataset_fingerprint  # torchvision's datasets only for image datasets

    fingerprint = dataset_fingerprint(dataset, Path(data_root))
    if fingerprint is not None:  # the listing identifies the data; where it lives does not matter
        extracted.pop("root", None)
        extracted["files"] = fingerprint
    description = {
        "format": CACHE_FORMAT,
        "backbone": backbone_identity(backbone),
        "dataset": extracted,
        "compute_dtype": "bfloat16" if settings.amp and device.type == "cuda" else "float32",
        "versions": runtime_versions(),
    }
    extraction_key = content_key(description)
    key = content_key({"features": extraction_key, "mapping": mapping}) if derive_mapping else extraction_key
    return FeatureRequest(dataset, backbone, settings, derive_mapping, extraction_key, key, description)


# --------------------------------------------------------------------------------------------- cache


def clear_memo() -> None:
    """Forget the feature arrays kept in this process (the on-disk cache is untouched)."""
    with _memo_lock:
        _memo.clear()


class CorruptCacheEntry(Exception):
    """A cache entry whose files do not match its ``meta.json``."""


def _cached_features(request: FeatureRequest, cache_dir: Path, data_root: Path, device: torch.device) -> CachedFeatures:
    """Memo → cache entry → extraction (under the entry's lock), in that order."""
    entry = cache_dir / "features" / request.extraction_key
    memo_key = str(entry.absolute())
    with _memo_lock:
        if memo_key in _memo:
            _memo.move_to_end(memo_key)
            return _memo[memo_key]
    try:
        cached = _read_entry(entry)
    except CorruptCacheEntry:
        cached = None  # checked again under the lock: another job may be repairing it
    if cached is None:
        lock = _entry_lock(entry, cache_dir)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("waiting for another process to finish extracting %s (%s)", request.label, entry)
            lock.acquire()
        try:
            cached = _read_entry_or_warn(entry)
            if cached is None:
                cached = _extract(request, data_root, device)
                try:
                    _write_entry(entry, cached, request.description)
                except OSError as err:  # a full or failing disk: the features just computed are not thrown away
                    log.warning("caching the features of %s in %s failed (%s): they are kept in memory for this "
                                "run only, and will be extracted again next time", request.label, cache_dir,
                                err.strerror or err)
        finally:
            lock.release()
    with _memo_lock:
        _memo[memo_key] = cached
        while len(_memo) > MEMO_SIZE:
            _memo.popitem(last=False)
    return cached


def _entry_lock(entry: Path, cache_dir: Path) -> FileLock:
    """The lock of a cache entry, in a folder that must be writable; a symlink planted at the lock path is refused
    (it would make the lock create or truncate a file elsewhere)."""
    path = Path(f"{entry}.lock")
    if path.is_symlink():
        raise ConfigError(f"refusing to use the feature-cache lock {path}: it is a symbolic link (to "
                          f"{os.readlink(path)}); remove it")
    check_writable_folder(entry.parent, f"the feature cache {cache_dir} is not writable",
                          "set paths.cache_dir (or paths.root) to a folder you can write")
    return FileLock(str(path))


def _read_entry_or_warn(entry: Path) -> CachedFeatures | None:
    try:
        return _read_entry(entry)
    except CorruptCacheEntry as err:
        log.warning("feature cache entry %s is corrupt (%s); extracting it again", entry, err)  # said once
        return None


def _read_entry(entry: Path) -> CachedFeatures | None:
    """The entry's arrays (memory-mapped, checksums verified), None if absent; raises CorruptCacheEntry."""
    if not entry.is_dir():
        return None
    try:
        meta = json.loads((entry / "meta.json").read_text())
        arrays = {}
        for name in ARRAY_NAMES:
            path, info = entry / f"{name}.npy", meta["arrays"][name]
            if sha256_file(path) != info["sha256"]:
                raise CorruptCacheEntry(f"{path.name}: checksum mismatch")
            array = np.load(path, mmap_mode="r")
            if list(array.shape) != info["shape"] or str(array.dtype) != info["dtype"]:
                raise CorruptCacheEntry(f"{path.name}: shape/dtype differ from meta.json")
            arrays[name] = array
        return CachedFeatures(arrays, list(meta["class_names"]))
    except (OSError, ValueError, KeyError, TypeError) as err:  # missing/truncated files, bad JSON or header
        raise CorruptCacheEntry(f"{type(err).__name__}: {err}") from err


def _write_entry(entry: Path, cached: CachedFeatures, description: dict) -> None:
    """Write to a temporary folder next to ``entry``, then rename it into place (replacing a corrupt one)."""
    staging = entry.parent / f".tmp-{entry.name}-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        arrays_meta = {}
        for name, array in cached.arrays.items():
            path = staging / f"{name}.npy"
            with open(path, "wb") as handle:
                np.save(handle, array)
                handle.flush()
                os.fsync(handle.fileno())
            arrays_meta[name] = {"shape": list(array.shape), "dtype": str(array.dtype), "sha256": sha256_file(path)}
        meta = {
            "key": entry.name,
            "arrays": arrays_meta,
            "class_names": cached.class_names,
            "versions": runtime_versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "description": description,
        }
        (staging / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        if entry.exists():
            stale = entry.parent / f".stale-{entry.name}-{uuid.uuid4().hex}"
            entry.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        staging.rename(entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------------------------- extraction


def _extract(request: FeatureRequest, data_root: Path, device: torch.device) -> CachedFeatures:
    """Load the images, build the backbone and embed both splits."""
    from imprint_bench.data.images import prepare_image_dataset

    images = prepare_image_dataset(request.dataset, data_root, apply_mapping=not request.derive_mapping)
    backbone = load_backbone(request.backbone, device)
    settings = request.settings
    if settings.channels_last and device.type == "cuda":
        backbone.model.to(memory_format=torch.channels_last)
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        split_images = images.split(split)
        started = time.perf_counter()
        arrays[f"{split}_x"] = _embed(backbone, split_images, settings, device, f"{request.label} [{split}]")
        arrays[f"{split}_y"] = split_images.labels.astype(np.int64)
        seconds = time.perf_counter() - started
        log.info(
            "extracted %d %s images in %.1f s (%.1f img/s): %s",
            len(split_images),
            split,
            seconds,
            len(split_images) / max(seconds, 1e-9),
            request.label,
        )
    for split in SPLITS:
        bad_rows = int((~np.isfinite(arrays[f"{split}_x"])).any(axis=1).sum())
        if bad_rows:
            raise ConfigError(
                f"{request.label}: the backbone gave NaN/Inf features for {bad_rows} {split} images (with "
                "extract.amp=true, try false); nothing was cached"
            )
    if arrays["train_x"].shape[1] != arrays["test_x"].shape[1]:
        raise ConfigError(
            f"{request.label}: train and test features differ in size ({arrays['train_x'].shape[1]} vs "
            f"{arrays['test_x'].shape[1]}); give the images one size with backbone.resize and backbone.crop"
        )
    return CachedFeatures(arrays, images.class_names)


@torch.inference_mode()
def _embed(
    backbone: Backbone, split: ImageSplit, settings: ExtractSettings, device: torch.device, description: str
) -> np.ndarray:
    """Features ``[N, d]`` (float32) of every image of ``split``, in order, with a progress bar (img/s)."""
    use_amp = settings.amp and device.type == "cuda"
    features = []
    with tqdm(total=len(split), desc=description, unit="img", dynamic_ncols=True, mininterval=1.0,
              disable=None) as bar:  # None: no progress frames in logs that are not a terminal
        for part in split.parts:
            for batch in _model_inputs(part, backbone.preprocess, settings, device):
                if settings.channels_last and device.type == "cuda":
                    batch = batch.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    features.append(backbone.model(batch).flatten(1).float())
                bar.update(len(batch))
    dims = {tuple(chunk.shape[1:]) for chunk in features}
    if len(dims) > 1:
        raise ConfigError(
            f"{description}: images of different sizes give features of different sizes {sorted(dims)}; "
            "give them one size with backbone.resize and backbone.crop"
        )
    return torch.cat(features).cpu().numpy()


def _model_inputs(
    part: ImagePart, preprocess: Preprocess, settings: ExtractSettings, device: torch.device
) -> Iterator[torch.Tensor]:
    """Preprocessed float batches on ``device``.

    In-memory images are uploaded once as uint8 and resized/cropped/normalised there by torch ops (on the
    GPU when there is one); image files are decoded, resized and cropped by DataLoader workers (pinned
    memory on CUDA) and normalised on the device.
    """
    if isinstance(part, ImageArray):
        images = part.images.to(device)
        step = settings.batch_for(device)
        for start in range(0, len(images), step):
            yield preprocess.batch(images[start : start + step])
        return
    loader = DataLoader(
        ImageFileDataset(part, preprocess),
        batch_size=settings.batch_for(device),
        num_workers=settings.num_workers,
        pin_memory=device.type == "cuda",
        collate_fn=_stack_one_size,
    )
    for batch in loader:
        yield preprocess.normalize(batch.to(device, non_blocking=True))


def _stack_one_size(images: list[torch.Tensor]) -> torch.Tensor:
    sizes = {tuple(image.shape) for image in images}
    if len(sizes) > 1:
        raise ConfigError(
            f"images of different sizes in one batch {sorted(sizes)[:3]}; give them one size with backbone.resize "
            "and backbone.crop"
        )
    return torch.stack(images)


# --------------------------------------------------------------------------------------------- helpers


def _plain(cfg: Mapping | None) -> dict[str, Any]:
    """A mapping as a plain, independent dict."""
    return copy.deepcopy(dict(cfg or {}))


def _settings(extract: ExtractSettings | Mapping | None) -> ExtractSettings:
    return extract if isinstance(extract, ExtractSettings) else ExtractSettings.from_cfg(extract)


def load_feature_set(
    dataset_cfg: Mapping,
    backbone_cfg: Mapping,
    extract_cfg: ExtractSettings | Mapping,
    cache_dir: str | Path,
    data_root: str | Path,
    device: torch.device,
) -> FeatureSet:
    """The FeatureSet a job works on, on ``device``: precomputed (.npz) or synthetic features as they are, image
    datasets through the backbone and the feature cache."""
    ds = _plain(dataset_cfg)
    kind = ds.get("kind")
    if kind == "features":
        from imprint_bench.data.npz import load_npz_features

        return load_npz_features(ds["path"]).to(device)
    if kind == "synthetic":
        from imprint_bench.data.synthetic import make_mixture

        params = {k: v for k, v in ds.items() if k not in ("kind", "name", "backbone", "ls_lambda")}
        return make_mixture(**params).to(device)
    return extract_feature_set(dataset_cfg, backbone_cfg, extract_cfg, Path(cache_dir), Path(data_root), device)
