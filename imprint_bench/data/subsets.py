"""``dataset.subset``: a fixed part of each split (the first N rows, or N rows per class drawn with a seed)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np

from imprint_bench.data import SPLITS
from imprint_bench.errors import ConfigError


@dataclass(frozen=True)
class Subset:
    """``dataset.subset``: keep the first N rows of a split, or N rows per class drawn with ``seed``."""

    train: int | None = None
    test: int | None = None
    per_class: bool = False
    seed: int = 0

    @classmethod
    def from_cfg(cls, cfg: Mapping | None) -> Subset:
        values = dict(cfg or {})
        valid = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - valid)
        if unknown:
            raise ConfigError(f"unknown dataset.subset field(s) {unknown}; valid fields: {sorted(valid)}")
        subset = cls(**values)
        for split in SPLITS:
            size = getattr(subset, split)
            if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
                raise ConfigError(f"dataset.subset.{split} must be null or a positive integer, got {size!r}")
        return subset

    @property
    def is_full(self) -> bool:
        return self.train is None and self.test is None

    def describe(self) -> dict:
        return asdict(self)

    def rows(self, labels: np.ndarray, split: str) -> np.ndarray:
        """Ascending row indices of ``split`` to keep (classes with fewer rows keep all of them)."""
        size = getattr(self, split)
        if size is None:
            return np.arange(len(labels))
        if not self.per_class:
            if size > len(labels):
                raise ConfigError(
                    f"dataset.subset.{split}={size} but the {split} split has only {len(labels)} rows; "
                    f"use at most {len(labels)} (or null for all)"
                )
            return np.arange(size)
        rng = np.random.default_rng([self.seed, SPLITS.index(split)])
        picks = [rng.permutation(np.flatnonzero(labels == label))[:size] for label in np.unique(labels)]
        return np.sort(np.concatenate(picks))
