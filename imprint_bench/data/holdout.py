"""The validation protocol: which training rows of a task are held out for model selection (no torch here, so
that planning can check it)."""

from __future__ import annotations

from dataclasses import dataclass

from imprint_bench.errors import ConfigError


@dataclass(frozen=True)
class Holdout:
    """A validation split carved out of each class's training rows: a fraction, or a number of rows per class
    (few-shot). Drawn from (seed, "val", label), stratified by construction, before any few-shot sample."""

    fraction: float = 0.0
    per_class: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.fraction, bool) or not isinstance(self.fraction, int | float) or not 0 <= self.fraction < 1:
            raise ConfigError(f"task.val_fraction must be a number in [0, 1), got {self.fraction!r} (e.g. 0.2)")
        if self.per_class is not None and (isinstance(self.per_class, bool) or not isinstance(self.per_class, int)
                                           or self.per_class < 1):
            raise ConfigError(f"task.val_per_class must be null or an integer >= 1, got {self.per_class!r}")
        if self.per_class is not None and self.fraction > 0:
            raise ConfigError("set task.val_fraction or task.val_per_class, not both "
                              f"(got {self.fraction} and {self.per_class})")

    @property
    def active(self) -> bool:
        return self.fraction > 0 or self.per_class is not None

    def identity(self) -> dict[str, float | int]:
        """What goes into a cell's hash (nothing when there is no split, so such hashes stay as they were)."""
        return {"val_per_class": self.per_class} if self.per_class is not None else {"val_fraction": self.fraction}

    def rows(self, n: int) -> int:
        """Validation rows of a class with ``n`` training rows (at least one for a positive fraction)."""
        return self.per_class if self.per_class is not None else max(1, round(self.fraction * n))


NO_HOLDOUT = Holdout()
