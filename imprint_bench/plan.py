"""From a composed config to what a job will evaluate: its cells and its method grid (no data is touched).

A *cell* is one (backbone, dataset, task, seed); a job evaluates one or more cells of the same feature
set (backbone × dataset) against one method grid. Everything here is cheap and imports no torch, so that
a sweep can be validated and counted before any job starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from imprint_bench.data import FEATURE_KINDS, UNSEEN_TEST, backbone_label
from imprint_bench.data.holdout import NO_HOLDOUT, Holdout
from imprint_bench.errors import ConfigError
from imprint_bench.grid import GridPlan, expand_grid, prune_for_task
from imprint_bench.identity import stable_hash
from imprint_bench.imprint.spec import JOINT_GEN, MethodSpec

EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9_+=-][A-Za-z0-9._+=-]{0,99}")

#: Dataset/backbone fields that stay out of cell hashes: they do not change the numbers, or (ls_lambda) they
#: do so through the method spec, which carries the effective λ.
NON_SEMANTIC_KEYS = ("download", "num_workers", "batch_size", "ls_lambda")


@dataclass
class Cell:
    """One (backbone, dataset, task, seed): identity fields and their hash."""

    backbone: str
    dataset: str
    mapping: str
    task: str
    classes: list[int] | None
    shots: int
    seed: int
    identity: dict[str, Any] = field(repr=False, default_factory=dict)
    unseen_test: str = "error"
    holdout: Holdout = NO_HOLDOUT

    @property
    def seed_drawn(self) -> bool:
        """Whether the seed chooses the task's rows (few-shot sample, validation split): its data is its own."""
        return self.shots > 0 or self.holdout.active

    @property
    def hash(self) -> str:
        return stable_hash(self.identity)

    def run_hash(self, spec: MethodSpec) -> str:
        return stable_hash({"cell": self.identity, "method": spec.to_dict()})

    def describe(self) -> str:
        shots = f" shots={self.shots}" if self.shots > 0 else ""
        return f"{self.backbone} / {self.dataset} / {self.task}{shots} / seed={self.seed}"


def describe_cells(cells: list[Cell]) -> str:
    """``backbone / dataset / task / seed`` for one cell; the feature set and its tasks × seeds for several."""
    if len(cells) == 1:
        return cells[0].describe()
    tasks = list(dict.fromkeys(c.task + (f" shots={c.shots}" if c.shots > 0 else "") for c in cells))
    seeds = list(dict.fromkeys(c.seed for c in cells))
    return (f"{cells[0].backbone} / {cells[0].dataset} / {len(cells)} cells: {len(tasks)} tasks "
            f"({', '.join(tasks[:6])}{', ...' if len(tasks) > 6 else ''}) × {len(seeds)} seeds")


def _semantic(cfg: DictConfig | dict) -> dict:
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    return {k: v for k, v in plain.items() if k not in NON_SEMANTIC_KEYS}


def file_stamp(path: str) -> dict[str, Any]:
    """Size and modification time of a file: a changed file at the same path is a new identity."""
    p = Path(path).expanduser()
    if not p.is_file():
        return {"path": str(p), "missing": True}
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"seed must be an integer, got {value!r} (e.g. seed=17121997)")
    return value


def _task_fields(task: Any) -> tuple[str, list[int] | None, int, str, Holdout]:
    """(name, classes, shots, unseen_test, holdout) of a task node, checked."""
    node = OmegaConf.to_container(task, resolve=True) if isinstance(task, DictConfig) else dict(task)
    name, classes, shots = node.get("name"), node.get("classes"), node.get("shots", -1)
    unseen_test = node.get("unseen_test", "error")
    if unseen_test not in UNSEEN_TEST:
        raise ConfigError(f"task.unseen_test must be one of {', '.join(UNSEEN_TEST)}, got {unseen_test!r}")
    if classes is not None and (not isinstance(classes, list) or
                                not all(isinstance(c, int) and not isinstance(c, bool) for c in classes)):
        raise ConfigError(f"task.classes must be null (all classes) or a list of integer labels, got {classes!r}")
    if isinstance(shots, bool) or not isinstance(shots, int):
        raise ConfigError(f"task.shots must be an integer (-1 = all samples), got {shots!r}")
    holdout = Holdout(node.get("val_fraction") or 0.0, node.get("val_per_class"))
    return str(name), classes, shots, unseen_test, holdout


@dataclass
class FeatureIdentity:
    """The feature set of a job (backbone × dataset [× mapping]): labels and what changes its numbers."""

    backbone: str
    dataset: str
    mapping: str
    identity: dict[str, Any]


def feature_identity(cfg: DictConfig) -> FeatureIdentity:
    dataset = _semantic(cfg.dataset)
    backbone: dict[str, Any] = {}
    labels = {"backbone": backbone_label(cfg.dataset, cfg.backbone), "name": str(dataset.get("name"))}
    if dataset.get("kind") in FEATURE_KINDS:
        if dataset.get("kind") == "features":
            from imprint_bench.data.npz import check_npz_file, stored_labels

            check_npz_file(dataset.get("path"))
            dataset["file"] = file_stamp(dataset["path"])
            stored = stored_labels(dataset["path"])  # a features file labels its rows unless the config does
            labels = {"backbone": dataset.get("backbone") or stored.get("backbone") or "precomputed",
                      "name": dataset.get("name") or stored.get("name") or Path(str(dataset["path"])).stem}
    else:
        backbone = _semantic(cfg.backbone)
        if backbone.get("checkpoint"):
            backbone["checkpoint_file"] = file_stamp(backbone["checkpoint"])
        backbone["amp"] = bool(cfg.extract.get("amp", False))  # bf16 features differ from fp32 ones
    return FeatureIdentity(str(labels["backbone"]), str(labels["name"]), str(dataset.get("mapping") or "none"),
                           {"dataset": dataset, "backbone": backbone})


def make_cell(features: FeatureIdentity, task: Any, seed: Any) -> Cell:
    """A cell and its identity: everything that changes its numbers except the method."""
    name, classes, shots, unseen_test, holdout = _task_fields(task)
    seed = _seed(seed)
    task_identity: dict[str, Any] = {"classes": classes, "shots": shots}
    if unseen_test != "error":  # only then can it change the numbers
        task_identity["unseen_test"] = unseen_test
    if holdout.active:  # likewise: without a validation split the hash stays what it was
        task_identity["holdout"] = holdout.identity()
    identity = {**features.identity, "task": task_identity, "seed": seed}
    return Cell(features.backbone, features.dataset, features.mapping, name, classes, shots, seed, identity,
                unseen_test, holdout)


def method_from_cfg(cfg: DictConfig) -> MethodSpec:
    """The base MethodSpec from the composed ``norm``/``gen``/``agg`` nodes."""
    node = OmegaConf.to_container(OmegaConf.masked_copy(cfg, ["norm", "gen", "agg"]), resolve=True)
    return MethodSpec.from_dict(node)


def ridge_lambda(cfg: DictConfig) -> float:
    """λ of ls/kls when ``gen.lam`` is unset: the backbone's ``ls_lambda`` (the weight decay of its
    pretraining); for precomputed or synthetic features the dataset's ``ls_lambda``."""
    node = cfg.dataset if cfg.dataset.get("kind") in FEATURE_KINDS else cfg.backbone
    return float(node.get("ls_lambda") or 1e-4)


def _with_lambda(spec: MethodSpec, lam: float) -> MethodSpec:
    """Write the effective λ into ls/kls specs, so that it is part of the run hash and the row."""
    if spec.gen.name in JOINT_GEN and spec.gen.lam is None:
        return replace(spec, gen=replace(spec.gen, lam=lam))
    return spec


@dataclass
class PlannedCell:
    """A cell, its grid plan and the number of runs it will evaluate (mNN pruned when the class count is known)."""

    cell: Cell
    plan: GridPlan
    n_runs: int
    task: Any = field(repr=False)


def job_cells(cfg: DictConfig) -> list[tuple[Any, Any]]:
    """(task node, seed) of every cell of a job: from ``cells`` (set by the sweeper when it groups a multirun's
    tasks and seeds into one job per feature set: ``{tasks: [task nodes], pairs: [[task index, seed], ...]}``),
    else the job's own task and seed."""
    cells = cfg.get("cells")
    if cells is None:
        return [(cfg.task, cfg.seed)]
    try:
        return [(cells.tasks[int(i)], seed) for i, seed in cells.pairs]
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as err:
        raise ConfigError("cells must be {tasks: [task configs], pairs: [[task index, seed], ...]} (the sweeper "
                          f"writes it; leave it null otherwise), got {OmegaConf.to_yaml(cells).strip()!r}") from err


def check_experiment_name(name: Any) -> str:
    """``experiment_name`` becomes one folder under ``paths.results_dir``: a short name, no path separators."""
    text = str(name)
    if not EXPERIMENT_NAME.fullmatch(text):
        raise ConfigError(f"experiment_name must be 1-100 letters, digits or . _ - + = (no / and not starting with "
                          f"a dot), as it names a folder under paths.results_dir; got {text[:120]!r}")
    return text


def plan_cells(cfg: DictConfig, cells: list[tuple[Any, Any]] | None = None) -> list[PlannedCell]:
    """Validate a job's configuration and plan each of its cells (default: ``job_cells(cfg)``); no data is
    touched. The method grid is expanded once per distinct shot count."""
    check_experiment_name(cfg.experiment_name)
    cells = job_cells(cfg) if cells is None else cells
    features = feature_identity(cfg)
    grid = OmegaConf.to_container(cfg.grid, resolve=True) if cfg.grid is not None else None
    base, lam = method_from_cfg(cfg), ridge_lambda(cfg)
    plans: dict[int, GridPlan] = {}
    out = []
    for task, seed in cells:
        cell = make_cell(features, task, seed)
        if cell.shots not in plans:
            plan = expand_grid(base, grid, cell.shots)
            plan.specs = list(dict.fromkeys(_with_lambda(s, lam) for s in plan.specs))
            if not plan.specs:
                raise ConfigError(f"the method grid has no valid configuration; pruned: {plan.pruned}")
            plans[cell.shots] = plan
        plan = plans[cell.shots]
        specs = prune_for_task(plan.specs, len(cell.classes))[0] if cell.classes is not None else plan.specs
        if not specs:
            raise ConfigError(f"task {cell.task!r} has {len(cell.classes or [])} classes: every configuration is "
                              "pruned (m-NN with m above its classes × k proxies); lower agg.m")
        out.append(PlannedCell(cell, plan, len(specs), task))
    if cfg.get("save_head"):
        if len(out) != 1:
            raise ConfigError(f"save_head needs a single cell (one task and one seed), but this job has {len(out)}; "
                              "sweep without save_head, then save one configuration")
        if len(out[0].plan.specs) != 1:
            raise ConfigError(f"save_head needs a single configuration, but the grid has {len(out[0].plan.specs)}; "
                              "drop grid=")
    return out


def plan_job(cfg: DictConfig) -> tuple[Cell, GridPlan]:
    """The job's own cell (its task and seed) and its method grid."""
    planned = plan_cells(cfg, [(cfg.task, cfg.seed)])[0]
    return planned.cell, planned.plan
