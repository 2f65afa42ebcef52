"""A task as configured: which classes, how many shots, what happens to unseen test classes, and the validation
split (torch-free, so that planning can check it; ``tasks.make_task`` builds the data)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from imprint_bench.data import UNSEEN_TEST
from imprint_bench.data.holdout import Holdout
from imprint_bench.errors import ConfigError


@dataclass(frozen=True)
class TaskSpec:
    """The ``task`` config node: a class subset of the dataset, optionally few-shot, with a validation split."""

    name: str
    classes: tuple[int, ...] | None = None  # None = every class of the dataset, in label order
    shots: int = -1  # samples per class used for imprinting; -1 = all
    unseen_test: str = "error"  # test rows of classes without training rows: error | exclude
    val_fraction: float = 0.0  # share of each class's training rows held out for validation (0 = none)
    val_per_class: int | None = None  # or a fixed number of validation rows per class (few-shot)
    steps: int = 1  # > 1: class-incremental protocol, the classes imprinted in this many steps
    order: tuple[int, ...] | None = None  # the classes' order over the steps; None = drawn from the seed

    @classmethod
    def from_node(cls, node: dict[str, Any]) -> TaskSpec:
        """Checked from a plain task node."""
        node = dict(node)
        unknown = sorted(set(node) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown task keys {unknown}; valid: {[f.name for f in fields(cls)]}")
        classes, shots = node.get("classes"), node.get("shots", -1)
        if node.get("unseen_test", "error") not in UNSEEN_TEST:
            raise ConfigError(f"task.unseen_test must be one of {', '.join(UNSEEN_TEST)}, got "
                              f"{node.get('unseen_test')!r}")
        if classes is not None and (not isinstance(classes, list | tuple) or
                                    not all(isinstance(c, int) and not isinstance(c, bool) for c in classes)):
            raise ConfigError(f"task.classes must be null (all classes) or a list of integer labels, got {classes!r}")
        if isinstance(shots, bool) or not isinstance(shots, int):
            raise ConfigError(f"task.shots must be an integer (-1 = all samples), got {shots!r}")
        steps, order = node.get("steps", 1), node.get("order")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"task.steps must be an integer >= 1 (1 = imprint all classes at once), got {steps!r}")
        if order is not None and (not isinstance(order, list | tuple) or len(set(order)) != len(order) or
                                  not all(isinstance(c, int) and not isinstance(c, bool) for c in order)):
            raise ConfigError(f"task.order must be null (drawn from the seed) or a list of distinct integer labels, "
                              f"got {order!r}")
        if order is not None and classes is not None and sorted(order) != sorted(classes):
            raise ConfigError(f"task.order {list(order)} must list exactly the task's classes {list(classes)}")
        spec = cls(**{**node, "name": str(node.get("name")), "classes": None if classes is None else tuple(classes),
                      "val_fraction": node.get("val_fraction") or 0.0, "steps": steps,
                      "order": None if order is None else tuple(order)})
        spec.holdout  # noqa: B018 (checks the validation split's values)
        if steps > 1 and (shots != -1 or spec.holdout.active):
            raise ConfigError("task.steps > 1 (class-incremental) uses every training row of each class: set "
                              "task.shots=-1 and no validation split (task.val_fraction=0)")
        return spec

    @property
    def incremental(self) -> bool:
        return self.steps > 1

    @property
    def holdout(self) -> Holdout:
        return Holdout(self.val_fraction, self.val_per_class)

    def node(self) -> dict[str, Any]:
        """The plain task node (what the sweeper passes to a job in ``cells``)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}
