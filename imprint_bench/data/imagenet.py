"""ImageNet "d in 1" tasks (spec §3.3): the 145 focus classes and the 100 label remappings ``map{d}-{v}``.

The class pools are replayed with Python's ``random`` in the reference's call order (not hard-coded):
seed 42 → ``fifty = sample(range(1000), 50)``; seed 420 → ``hundred = sample(range(1000), 100)``; then
ten in-place ``shuffle(hundred)`` calls on the same stream give variants v = 0..9. Mapping ``map{d}-{v}``
sends ImageNet class ``hundred_v[10j + t]`` to label j for j = 0..9 and t < d; every other class is dropped.

ImageNet itself is read from class folders named by WordNet id (``<root>/train/n01440764/*.JPEG`` and
``<root>/val/n01440764/*.JPEG``, the layout ``torchvision.datasets.ImageNet`` or the usual ``valprep.sh``
produce); class index = position of the wnid in the sorted list of the 1,000 ImageNet-1k wnids.
"""

from __future__ import annotations

import functools
import os
import random
import re
from pathlib import Path
from typing import TYPE_CHECKING

from imprint_bench.data import IMAGE_EXTENSIONS
from imprint_bench.errors import ConfigError

if TYPE_CHECKING:
    from timm.data import ImageNetInfo

N_CLASSES = 1000
N_VARIANTS = 10
MAX_MERGED = 10
N_LABELS = 10
MAPPING_PATTERN = re.compile(r"map(\d+)-(\d+)")
#: Split folder names on disk (the test split is ImageNet's validation set).
SPLIT_FOLDERS = {"train": "train", "test": "val"}


@functools.cache
def _class_pools() -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """(fifty, the ten successive shuffles of hundred), replaying the reference's ``random`` calls."""
    rng = random.Random(42)
    fifty = rng.sample(range(N_CLASSES), 50)
    rng.seed(420)
    hundred = rng.sample(range(N_CLASSES), 100)
    shuffles = []
    for _ in range(N_VARIANTS):
        rng.shuffle(hundred)
        shuffles.append(tuple(hundred))
    return tuple(fifty), tuple(shuffles)


def focus_classes() -> list[int]:
    """The 145 ImageNet class indices the reference embeds (``fifty ∪ hundred``), sorted."""
    fifty, shuffles = _class_pools()
    return sorted(set(fifty) | set(shuffles[0]))


def shuffled_pool(variant: int) -> list[int]:
    """The hundred-class pool after ``variant + 1`` shuffles."""
    return list(_class_pools()[1][variant])


def parse_mapping(name: str) -> tuple[int, int]:
    """``"map{d}-{v}"`` → (d, v), checked (d = 1..10 classes merged per label, v = 0..9 variant)."""
    match = MAPPING_PATTERN.fullmatch(str(name))
    if not match or not (1 <= int(match[1]) <= MAX_MERGED and 0 <= int(match[2]) < N_VARIANTS):
        raise ConfigError(
            f"unknown ImageNet mapping {name!r}; valid: map{{d}}-{{v}} with d = 1..{MAX_MERGED} and "
            f"v = 0..{N_VARIANTS - 1}, e.g. map1-0 or map10-9"
        )
    return int(match[1]), int(match[2])


def d_in_1_mapping(name: str) -> dict[int, int]:
    """ImageNet class → label 0..9 for mapping ``map{d}-{v}``."""
    merged, variant = parse_mapping(name)
    pool = shuffled_pool(variant)
    return {pool[N_LABELS * label + t]: label for label in range(N_LABELS) for t in range(merged)}


def d_in_1_class_names(name: str) -> list[str]:
    """Label names of mapping ``map{d}-{v}``: the merged classes' names joined by ``+``."""
    names = class_names()
    members: dict[int, list[str]] = {label: [] for label in range(N_LABELS)}
    for imagenet_class, label in d_in_1_mapping(name).items():
        members[label].append(names[imagenet_class])
    return ["+".join(members[label]) for label in range(N_LABELS)]


@functools.cache
def _info() -> ImageNetInfo:
    from timm.data import ImageNetInfo  # timm only when ImageNet names are needed (it imports wandb)

    return ImageNetInfo()


def class_names() -> list[str]:
    """Short English name of each of the 1,000 classes (first lemma, e.g. ``tench``)."""
    info = _info()
    return [info.index_to_description(index).split(",")[0] for index in range(N_CLASSES)]


def list_split(root: Path, split: str, classes: list[int]) -> tuple[list[str], list[int]]:
    """Relative image paths and class indices of ``classes`` in one split, sorted by class then file."""
    split_dir = root / SPLIT_FOLDERS[split]
    wnids = _info().label_names()
    missing = [wnids[c] for c in classes if not (split_dir / wnids[c]).is_dir()]
    if missing:
        raise ConfigError(
            f"ImageNet {split} split incomplete under {split_dir}: {len(missing)} of the {len(classes)} needed class "
            f"folders are missing (e.g. {', '.join(missing[:5])}). Expected {root}/train/<wnid>/*.JPEG and "
            f"{root}/val/<wnid>/*.JPEG (the layout torchvision.datasets.ImageNet creates); set dataset.root or "
            "paths.data_root (env IMPRINT_BENCH_DATA, which should contain imagenet/). ImageNet cannot be "
            "downloaded automatically (licence); get it from https://image-net.org"
        )
    files, labels = [], []
    for index in classes:
        wnid = wnids[index]
        names = sorted(
            entry.name
            for entry in os.scandir(split_dir / wnid)
            if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS)
        )
        files += [f"{SPLIT_FOLDERS[split]}/{wnid}/{name}" for name in names]
        labels += [index] * len(names)
    return files, labels
