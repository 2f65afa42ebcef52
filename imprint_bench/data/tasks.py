"""Tasks: a class subset of a FeatureSet, renumbered in order, with an optional few-shot sample."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from imprint_bench.data import UNSEEN_TEST
from imprint_bench.data.base import FeatureSet
from imprint_bench.data.holdout import NO_HOLDOUT, Holdout
from imprint_bench.errors import ConfigError, check_choice
from imprint_bench.rng import generator

log = logging.getLogger(__name__)

#: The paper's class splits (spec §3.4); ``all`` is every class of the dataset.
TASK_SPLITS: dict[str, list[int] | None] = {
    "all": None,
    "even": [0, 2, 4, 6, 8],
    "odd": [1, 3, 5, 7, 9],
    "short": [0, 1, 2],
}


@dataclass
class Task:
    """One classification task: per-class train features (dataset labels ``labels``, model class i =
    ``labels[i]``) and the test rows of those classes with labels renumbered to 0..C-1."""

    name: str
    labels: list[int]
    class_names: list[str]
    train: list[torch.Tensor]
    x_test: torch.Tensor
    y_test: torch.Tensor
    shots: int = -1
    n_test_excluded: int = 0  # test rows of classes without training rows, left out (task.unseen_test=exclude)
    holdout: Holdout = NO_HOLDOUT  # the validation split held out of the training rows (task.val_fraction)
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    @property
    def n_val(self) -> int:
        return 0 if self.y_val is None else int(self.y_val.shape[0])

    @property
    def seed_drawn(self) -> bool:
        """Whether the run seed chose its rows (a few-shot sample or a validation split)."""
        return self.shots > 0 or self.n_val > 0

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    @property
    def n_train(self) -> int:
        return sum(int(x.shape[0]) for x in self.train)

    def train_mean(self) -> torch.Tensor:
        """Mean of all train rows of the task (the CL2N centre), without concatenating them."""
        return sum(x.sum(0) for x in self.train) / self.n_train

    def train_xy(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Train features and renumbered labels as two tensors."""
        y = [torch.full((x.shape[0],), i, dtype=torch.int64, device=x.device) for i, x in enumerate(self.train)]
        return torch.cat(self.train), torch.cat(y)


#: (feature set, task, shots) already warned about classes with fewer rows than shots (said once per process).
_WARNED_SHORT: set[tuple] = set()


def make_task(features: FeatureSet, name: str, classes: Sequence[int] | None, shots: int = -1, seed: int = 0,
              unseen_test: str = "error", holdout: Holdout = NO_HOLDOUT) -> Task:
    """Restrict ``features`` to ``classes`` (None = all, in label order) and renumber them 0..C-1.

    With ``shots > 0`` each class keeps a random sample of ``min(shots, n)`` train rows drawn from
    (seed, "shots", label): the same rows for every method at that seed (paired comparisons).
    With ``classes=None``, test rows of classes that have no training rows are an error (they would be
    dropped and inflate the accuracy), unless ``unseen_test="exclude"``: then they are left out and counted
    in ``Task.n_test_excluded``. With an active ``holdout`` each class first gives up its validation rows
    (drawn from (seed, "val", label), whatever the method), and GEN sees only the rest.
    """
    check_choice("task.unseen_test", unseen_test, UNSEEN_TEST)
    available = sorted(int(v) for v in torch.unique(features.y_train).tolist())
    labels = available if classes is None else [int(c) for c in classes]
    n_excluded = 0
    if classes is None:
        unseen = sorted(set(torch.unique(features.y_test).tolist()) - set(available))
        if unseen:
            rows = int(torch.isin(features.y_test, torch.tensor(unseen, device=features.y_test.device)).sum())
            if unseen_test == "error":
                raise ConfigError(
                    f"task {name!r}: the test split of {features.source or 'the dataset'} has {rows} rows of classes "
                    f"{unseen} that have no training rows; they cannot be predicted. Set task.unseen_test=exclude to "
                    "evaluate on the training classes only (the rows are counted in n_test_excluded)")
            n_excluded = rows
    if not labels:
        raise ConfigError(f"task {name!r} has no classes")
    if len(set(labels)) != len(labels):
        raise ConfigError(f"task {name!r} lists a class twice: {labels}")
    missing = [c for c in labels if c not in available]
    if missing:
        raise ConfigError(
            f"task {name!r}: classes {missing} have no training samples in {features.source or 'the dataset'}; "
            f"classes with training samples: {available}"
        )
    if shots == 0 or shots < -1:
        raise ConfigError(f"task.shots must be -1 (all samples) or a positive number, got {shots}")
    train, val, short = [], [], []
    for label in labels:
        x = features.class_rows(label)
        if holdout.active:
            held, x = _hold_out(x, holdout, seed, label, name)
            val.append(held)
        if shots > x.shape[0]:
            short.append(int(x.shape[0]))
        if shots > 0 and x.shape[0] > shots:
            perm = torch.randperm(x.shape[0], generator=generator(seed, "shots", label))[:shots]
            x = x[perm.sort().values.to(x.device)]
        train.append(x)
    remap = torch.full((max(max(available), max(labels)) + 1,), -1, dtype=torch.int64, device=features.y_test.device)
    remap[torch.tensor(labels, device=remap.device)] = torch.arange(len(labels), device=remap.device)
    y_test = features.y_test
    keep = (y_test >= 0) & (y_test < remap.shape[0])
    keep &= remap[y_test.clamp(0, remap.shape[0] - 1)] >= 0
    if not bool(keep.any()):
        raise ConfigError(f"task {name!r}: the test split has no samples of classes {labels}")
    names = features.class_names
    class_names = [names[c] if c < len(names) else str(c) for c in labels]
    if short and (features.key, name, shots) not in _WARNED_SHORT:
        _WARNED_SHORT.add((features.key, name, shots))
        log.warning("task %r: shots=%d, but %d of %d classes have fewer training rows (fewest: %d); they use all "
                    "their rows (n_train records the rows used)", name, shots, len(short), len(labels), min(short))
    task = Task(name, labels, class_names, train, features.x_test[keep], remap[y_test[keep]], shots, n_excluded)
    if holdout.active:
        task.holdout = holdout
        task.x_val = torch.cat(val)
        task.y_val = torch.cat([torch.full((v.shape[0],), i, dtype=torch.int64, device=v.device)
                                for i, v in enumerate(val)])
    return task


def _hold_out(x: torch.Tensor, holdout: Holdout, seed: int, label: int, task: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(validation rows, remaining training rows) of one class, both in their original order."""
    n = int(x.shape[0])
    n_val = holdout.rows(n)
    if n_val >= n:
        raise ConfigError(f"task {task!r}: class {label} has {n} training rows; holding out {n_val} for validation "
                          "leaves none to imprint from. Lower task.val_fraction / task.val_per_class")
    perm = torch.randperm(n, generator=generator(seed, "val", label))
    held, rest = perm[:n_val].sort().values.to(x.device), perm[n_val:].sort().values.to(x.device)
    return x[held], x[rest]
