"""FeatureSet: the embeddings of one (backbone, dataset) pair, the unit every later stage consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from imprint_bench.errors import ConfigError


@dataclass
class FeatureSet:
    """Train/test embeddings with integer labels (dataset label space) and optional class names.

    ``key`` identifies the content (a feature-cache key or a file checksum); caches downstream use it.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: list[str] = field(default_factory=list)
    key: str = ""
    source: str = ""
    _by_class: dict[int, torch.Tensor] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.validate()

    def class_rows(self, label: int) -> torch.Tensor:
        """The train rows of class ``label``, in dataset order. All classes are split off in one pass on first use
        (one stable sort by label, none when the rows come grouped by class) and shared by every task that has the
        class: views, not copies per task."""
        return self._classes().get(int(label), self.x_train[:0])

    def class_labels(self) -> list[int]:
        """The labels that have train rows, ascending (negative ones, "unmapped", left out)."""
        return [label for label in self._classes() if label >= 0]

    def _classes(self) -> dict[int, torch.Tensor]:
        if self._by_class is None:
            y = self.y_train
            if bool((y[1:] >= y[:-1]).all()):  # rows already grouped by class (e.g. extracted from a folder): views
                labels, counts = torch.unique_consecutive(y, return_counts=True)
                blocks = torch.split(self.x_train, counts.tolist())
            else:
                order = torch.argsort(y, stable=True)
                labels, counts = torch.unique_consecutive(y[order], return_counts=True)
                blocks = torch.split(self.x_train[order], counts.tolist())
            self._by_class = dict(zip(labels.tolist(), blocks, strict=True))
        return self._by_class

    @property
    def dim(self) -> int:
        return int(self.x_train.shape[1])

    def to(self, device: torch.device | str) -> FeatureSet:
        """Return a copy whose tensors live on ``device`` (features float32, labels int64); ``self`` when
        they already do (no copy, no second validation)."""
        device = torch.device(device)
        if all(t.device == device for t in (self.x_train, self.y_train, self.x_test, self.y_test)) and (
            self.x_train.dtype == self.x_test.dtype == torch.float32
            and self.y_train.dtype == self.y_test.dtype == torch.int64
        ):
            return self
        return FeatureSet(
            self.x_train.to(device, torch.float32),
            self.y_train.to(device, torch.int64),
            self.x_test.to(device, torch.float32),
            self.y_test.to(device, torch.int64),
            list(self.class_names),
            self.key,
            self.source,
        )

    def validate(self) -> None:
        """Check shapes and finiteness; errors name the source and the problem."""
        where = self.source or "feature set"
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.ndim != 2:
                raise ConfigError(f"{where}: X_{split} must be 2-D [n, dim], got shape {tuple(x.shape)}")
            if y.ndim != 1 or y.shape[0] != x.shape[0]:
                raise ConfigError(
                    f"{where}: y_{split} must be 1-D with one label per row of X_{split}; "
                    f"got X_{split} {tuple(x.shape)} and y_{split} {tuple(y.shape)}"
                )
            if x.shape[0] == 0:
                raise ConfigError(f"{where}: X_{split} has no rows")
            if x.is_floating_point() and not all_finite(x):
                bad = int((~torch.isfinite(x)).any(dim=1).sum())
                raise ConfigError(f"{where}: X_{split} contains NaN or Inf values in {bad} rows")
        if self.x_train.shape[1] != self.x_test.shape[1]:
            raise ConfigError(
                f"{where}: X_train has dim {self.x_train.shape[1]} but X_test has dim {self.x_test.shape[1]}"
            )


def all_finite(x: torch.Tensor) -> bool:
    """Whether ``x`` holds no NaN or Inf. A finite sum proves it (either would make the sum NaN or infinite) at a
    quarter of the cost of checking each value, which is done only when the sum is not finite (it may overflow)."""
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())
