"""Image datasets for feature extraction: the registry of dataset kinds, loading with mapping and subset, and
the file-listing fingerprint that enters the feature-cache key.

``dataset.kind`` selects the loader (:data:`DATASET_KINDS`): one per kind in :mod:`.image_loaders`, and here
``concat`` (several datasets, labels offset by the running class count; CombiDigits). The loaded
:class:`~.containers.ImageDataset` is remapped by ``dataset.mapping`` (:mod:`.mappings`) and cut to
``dataset.subset`` (:mod:`.subsets`).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from torchvision import datasets

from imprint_bench.data import SPLITS, image_loaders
from imprint_bench.data.containers import ImageArray, ImageDataset, ImageFiles, ImagePart, ImageSplit
from imprint_bench.data.mappings import resolve_label_map
from imprint_bench.data.subsets import Subset
from imprint_bench.errors import ConfigError, check_choice


def _member_cfg(member: str | Mapping, download: bool) -> dict:
    member_cfg = {"kind": member} if isinstance(member, str) else dict(member)
    if member_cfg.get("mapping") is not None or member_cfg.get("subset") is not None:
        raise ConfigError(f"concat member {member_cfg.get('kind')!r}: set mapping/subset on the concat dataset")
    member_cfg.setdefault("download", download)
    return member_cfg


def _load_concat(cfg: Mapping, data_root: Path) -> ImageDataset:
    """Members one after another, labels offset by the running class count, grey members made RGB when any
    member is RGB; class names are ``<member>/<class>`` (spec §3.2)."""
    members = [_member_cfg(member, bool(cfg.get("download"))) for member in cfg.get("members") or []]
    if len(members) < 2:
        raise ConfigError("a concat dataset needs dataset.members: a list of at least two dataset kinds")
    loaded = [(member, load_image_dataset(member, data_root)) for member in members]
    in_memory = [part for _, dataset in loaded for part in dataset.train.parts if isinstance(part, ImageArray)]
    channels = max((part.images.shape[1] for part in in_memory), default=3)
    splits: dict[str, list[ImagePart]] = {split: [] for split in SPLITS}
    class_names: list[str] = []
    for member, dataset in loaded:
        label = member.get("name") or DATASET_KINDS[member["kind"]].label
        for split in SPLITS:
            for part in dataset.split(split).parts:
                if isinstance(part, ImageArray) and part.images.shape[1] < channels:
                    part = ImageArray(part.images.repeat(1, channels, 1, 1), part.labels)
                splits[split].append(replace(part, labels=part.labels + len(class_names)))
        class_names += [f"{label}/{name}" for name in dataset.class_names]
    return ImageDataset(ImageSplit(splits["train"]), ImageSplit(splits["test"]), class_names)


@dataclass(frozen=True)
class DatasetKind:
    """A ``dataset.kind``: its loader, a display label, and what of its file listing enters the cache key:
    nothing (in-memory data), ``"names"`` (paths and labels; fixed data such as ImageNet, where a stat of
    every file would slow each job) or ``"sizes"`` (also every file's size; your own, editable folders)."""

    load: Callable[[Mapping, Path], ImageDataset]
    label: str
    listing_key: Literal["names", "sizes"] | None = None


DATASET_KINDS: dict[str, DatasetKind] = {
    "mnist": DatasetKind(image_loaders.load_mnist, "MNIST"),
    "fashion_mnist": DatasetKind(image_loaders.load_fashion_mnist, "FashionMNIST"),
    "cifar10": DatasetKind(
        functools.partial(image_loaders.load_cifar, dataset_class=datasets.CIFAR10, folder="cifar-10-batches-py"),
        "CIFAR-10",
    ),
    "cifar100": DatasetKind(
        functools.partial(image_loaders.load_cifar, dataset_class=datasets.CIFAR100, folder="cifar-100-python"),
        "CIFAR-100",
    ),
    "svhn": DatasetKind(image_loaders.load_svhn, "SVHN"),
    "usps": DatasetKind(image_loaders.load_usps, "USPS"),
    "mnist_m": DatasetKind(image_loaders.load_mnist_m, "MNIST-M"),
    "concat": DatasetKind(_load_concat, "concat"),
    "imagenet": DatasetKind(image_loaders.load_imagenet, "ImageNet", listing_key="names"),
    "image_folder": DatasetKind(image_loaders.load_image_folder, "images", listing_key="sizes"),
    "mnist5k": DatasetKind(image_loaders.load_mnist5k, "mnist5k"),
    "digits": DatasetKind(image_loaders.load_digits, "digits"),
    "fashion_mnist_debian": DatasetKind(image_loaders.load_fashion_mnist_debian, "fashion_mnist"),
}


def load_image_dataset(cfg: Mapping, data_root: Path) -> ImageDataset:
    """Load ``dataset.kind`` with raw labels (no mapping, no subset)."""
    check_choice("dataset.kind", cfg.get("kind"), DATASET_KINDS)
    return DATASET_KINDS[cfg["kind"]].load(cfg, Path(data_root))


def prepare_image_dataset(cfg: Mapping, data_root: Path, apply_mapping: bool = True) -> ImageDataset:
    """Load ``cfg``, remap labels by ``dataset.mapping`` (if ``apply_mapping``; unmapped rows are dropped) and
    keep the ``dataset.subset`` rows of each split."""
    subset = Subset.from_cfg(cfg.get("subset"))
    dataset = load_image_dataset(cfg, data_root)
    label_map = resolve_label_map(cfg, dataset.class_names) if apply_mapping else None
    splits = {}
    for split in SPLITS:
        images = dataset.split(split)
        if label_map is not None:
            images = images.take(*label_map.apply(images.labels))
        splits[split] = images.take(subset.rows(images.labels, split))
        if len(splits[split]) == 0:
            raise ConfigError(f"dataset {cfg.get('name') or cfg['kind']!r} has no {split} images after mapping/subset")
    return ImageDataset(splits["train"], splits["test"], label_map.class_names if label_map else dataset.class_names)


def dataset_fingerprint(cfg: Mapping, data_root: Path) -> str | None:
    """Digest of the file listing of file-based datasets (None for in-memory ones, whose data is fixed)."""
    check_choice("dataset.kind", cfg.get("kind"), DATASET_KINDS)
    if cfg["kind"] == "concat":
        members = [_member_cfg(member, False) for member in cfg.get("members") or []]
        prints = [dataset_fingerprint(member, data_root) for member in members]
        return hashlib.sha256(repr(prints).encode()).hexdigest() if any(prints) else None
    listing_key = DATASET_KINDS[cfg["kind"]].listing_key
    if listing_key is None:
        return None
    dataset = load_image_dataset(cfg, data_root)
    parts = [part for split in SPLITS for part in dataset.split(split).parts if isinstance(part, ImageFiles)]
    prints = "".join(part.fingerprint(with_sizes=listing_key == "sizes") for part in parts)
    return hashlib.sha256(prints.encode()).hexdigest()
