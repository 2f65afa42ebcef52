"""``dataset.mapping``: label remappings applied after loading.

``combined`` (concat: label i of every member → i) or ``map{d}-{v}`` (ImageNet d-in-1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from imprint_bench.data import imagenet
from imprint_bench.errors import ConfigError


@dataclass(frozen=True)
class LabelMap:
    """A label remapping: ``targets`` maps old labels to new ones; rows with other labels are dropped."""

    name: str
    targets: dict[int, int]
    class_names: list[str]

    def apply(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ascending indices of the kept rows, their new labels)."""
        lookup = np.full(int(labels.max(initial=0)) + 1, -1, dtype=np.int64)
        for old, new in self.targets.items():
            if old < len(lookup):
                lookup[old] = new
        new_labels = lookup[labels]
        rows = np.flatnonzero(new_labels >= 0)
        return rows, new_labels[rows]


def mapping_name(cfg: Mapping) -> str | None:
    """``dataset.mapping``, checked against the dataset kind (ImageNet needs one of ``map{d}-{v}``)."""
    mapping, kind = cfg.get("mapping"), cfg.get("kind")
    if kind == "imagenet":
        if mapping is None:
            raise ConfigError("an imagenet dataset needs dataset.mapping=map{d}-{v} (e.g. map1-0); see spec §3.3")
        imagenet.parse_mapping(mapping)
    elif mapping == "combined":
        if kind != "concat":
            raise ConfigError(f"dataset.mapping=combined merges the members of a concat dataset, not kind {kind!r}")
    elif mapping is not None:
        raise ConfigError(
            f"unknown dataset.mapping {mapping!r} for kind {kind!r}; valid: null, combined (concat datasets), "
            "map{d}-{v} (imagenet)"
        )
    return mapping


def resolve_label_map(cfg: Mapping, class_names: list[str]) -> LabelMap | None:
    """The :class:`LabelMap` of ``dataset.mapping`` for a dataset whose raw classes are ``class_names``."""
    mapping = mapping_name(cfg)
    if mapping is None:
        return None
    if mapping == "combined":
        n_members = len(cfg["members"])
        per_member = len(class_names) // n_members
        if per_member * n_members != len(class_names):
            raise ConfigError(
                f"mapping=combined needs members with the same number of classes; got {len(class_names)} "
                f"classes over {n_members} members"
            )
        names = [name.split("/", 1)[1] for name in class_names[:per_member]]
        return LabelMap(mapping, {raw: raw % per_member for raw in range(len(class_names))}, names)
    return LabelMap(mapping, imagenet.d_in_1_mapping(mapping), imagenet.d_in_1_class_names(mapping))
