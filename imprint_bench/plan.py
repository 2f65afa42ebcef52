"""From a composed config to what a job will evaluate: its cells and its method grid (no data is touched).

A *cell* is one (backbone, dataset, task, seed); a job evaluates one or more cells of the same feature
set (backbone × dataset) against one method grid. Everything here is cheap and imports no torch, so that
a sweep can be validated and counted before any job starts.

This is the last module that reads the composed ``DictConfig``: :func:`plan_job` turns it into one frozen
:class:`JobSpec` (feature set, cells, stages, paths and options), and everything below works from that.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from imprint_bench.data import FEATURE_KINDS, backbone_label
from imprint_bench.data.extract_settings import ExtractSettings
from imprint_bench.data.holdout import NO_HOLDOUT, Holdout
from imprint_bench.data.task_spec import TaskSpec
from imprint_bench.errors import ConfigError, PrunedError, check_writable_folder
from imprint_bench.grid import GridPlan, expand_grid, prune_for_task
from imprint_bench.identity import stable_hash
from imprint_bench.imprint.registry import gen_stage
from imprint_bench.imprint.spec import MethodSpec

log = logging.getLogger(__name__)

DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
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
    steps: int = 1  # > 1: the class-incremental protocol (one row per method and step)
    order: list[int] | None = None  # its class order (None: drawn from the seed)

    @property
    def seed_drawn(self) -> bool:
        """Whether the seed chooses the task's rows (few-shot sample, validation split): its data is its own."""
        return self.shots > 0 or self.holdout.active

    @property
    def hash(self) -> str:
        return stable_hash(self.identity)

    @property
    def task_key(self) -> str:
        """Hash of the task's content (what its name stands for in this cell)."""
        return stable_hash(self.identity["task"])[:12]

    def run_hash(self, spec: MethodSpec, step: int | None = None) -> str:
        """A run's hash; a class-incremental run has one per step."""
        if step is None:
            return stable_hash({"cell": self.identity, "method": spec.to_dict()})
        return stable_hash({"cell": self.identity, "method": spec.to_dict(), "step": step})

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


def plain(node: Any) -> Any:
    """A config node as plain Python values, interpolations resolved; a ``???`` value is a ConfigError naming it."""
    if not isinstance(node, DictConfig | ListConfig):
        return node
    try:
        return OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as err:
        raise ConfigError(f"{err.full_key} must be set (it is ??? in the config), e.g. {err.full_key}=...") from err


def _semantic(node: dict) -> dict:
    return {k: v for k, v in node.items() if k not in NON_SEMANTIC_KEYS}


def file_stamp(path: str) -> dict[str, Any]:
    """Size and modification time of a file: a changed file at the same path is a new identity."""
    p = Path(path).expanduser()
    if not p.is_file():
        return {"path": str(p), "missing": True}
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        raise ConfigError(f"seed must be an integer, got {value!r} (e.g. seed=17121997; the results store it as "
                          "int64, so -2^63 <= seed < 2^63)")
    return value


@dataclass
class FeatureIdentity:
    """The feature set of a job (backbone × dataset [× mapping]): labels and what changes its numbers."""

    backbone: str
    dataset: str
    mapping: str
    identity: dict[str, Any]


def feature_identity(dataset_node: dict, backbone_node: dict, extract: ExtractSettings) -> FeatureIdentity:
    """Labels and identity of a feature set from the plain dataset, backbone and extract nodes."""
    dataset = _semantic(dataset_node)
    backbone: dict[str, Any] = {}
    labels = {"backbone": backbone_label(dataset_node, backbone_node), "name": str(dataset.get("name"))}
    if dataset.get("kind") in FEATURE_KINDS:
        if dataset.get("kind") == "features":
            from imprint_bench.data.npz import check_npz_file, stored_labels

            check_npz_file(dataset.get("path"))
            dataset["file"] = file_stamp(dataset["path"])
            stored = stored_labels(dataset["path"])  # a features file labels its rows unless the config does
            labels = {"backbone": dataset.get("backbone") or stored.get("backbone") or "precomputed",
                      "name": dataset.get("name") or stored.get("name") or Path(str(dataset["path"])).stem}
    else:
        backbone = _semantic(backbone_node)
        if backbone.get("checkpoint"):
            backbone["checkpoint_file"] = file_stamp(backbone["checkpoint"])
        backbone["amp"] = bool(extract.amp)  # bf16 features differ from fp32 ones
    return FeatureIdentity(str(labels["backbone"]), str(labels["name"]), str(dataset.get("mapping") or "none"),
                           {"dataset": dataset, "backbone": backbone})


def make_cell(features: FeatureIdentity, task: TaskSpec | dict, seed: Any) -> Cell:
    """A cell and its identity: everything that changes its numbers except the method."""
    task = task if isinstance(task, TaskSpec) else TaskSpec.from_node(task)
    seed = _seed(seed)
    classes = None if task.classes is None else list(task.classes)
    task_identity: dict[str, Any] = {"classes": classes, "shots": task.shots}
    if task.unseen_test != "error":  # only then can it change the numbers
        task_identity["unseen_test"] = task.unseen_test
    if task.holdout.active:  # likewise: without a validation split the hash stays what it was
        task_identity["holdout"] = task.holdout.identity()
    if task.incremental:  # likewise
        task_identity["incremental"] = {"steps": task.steps, "order": None if task.order is None else list(task.order)}
    identity = {**features.identity, "task": task_identity, "seed": seed}
    return Cell(features.backbone, features.dataset, features.mapping, task.name, classes, task.shots, seed, identity,
                task.unseen_test, task.holdout, task.steps, None if task.order is None else list(task.order))


def ridge_lambda(dataset: dict, backbone: dict) -> float:
    """λ of ls/kls when ``gen.lam`` is unset: the backbone's ``ls_lambda`` (the weight decay of its
    pretraining); for precomputed or synthetic features the dataset's ``ls_lambda``."""
    node = dataset if dataset.get("kind") in FEATURE_KINDS else backbone
    return float(node.get("ls_lambda") or 1e-4)


def _with_lambda(spec: MethodSpec, lam: float) -> MethodSpec:
    """Write the effective λ into ls/kls specs, so that it is part of the run hash and the row."""
    if gen_stage(spec.gen.name, spec.gen.target).lam and spec.gen.lam is None:
        return replace(spec, gen=replace(spec.gen, lam=lam))
    return spec


@dataclass(frozen=True)
class PlannedCell:
    """A cell, its grid plan and the number of runs it will evaluate (mNN pruned when the class count is known)."""

    cell: Cell
    plan: GridPlan
    n_runs: int
    task: TaskSpec = field(repr=False)

    @property
    def plan_hash(self) -> str:
        """Hash of the cell's planned runs (its completion marker records it)."""
        return stable_hash(sorted(self.cell.run_hash(s) for s in self.plan.specs))


@dataclass(frozen=True)
class FeatureSource:
    """Where a job's features come from: the plain dataset and backbone nodes, extraction settings and folders."""

    dataset: dict[str, Any]
    backbone: dict[str, Any]
    extract: ExtractSettings
    cache_dir: str
    data_root: str


@dataclass(frozen=True)
class JobSpec:
    """Everything one job needs, built once from the composed config (:func:`plan_job`): nothing below this
    module reads the config."""

    experiment: str
    results_dir: Path
    features: FeatureSource
    cells: tuple[PlannedCell, ...]
    lam: float  # the ridge λ of ls/kls when gen.lam is unset (already written into the specs)
    device: str
    overwrite: bool
    nc1: bool
    flush_every: int
    save_head: Path | None
    optimized_metric: str | None

    @property
    def experiment_dir(self) -> Path:
        return self.results_dir / self.experiment

    @property
    def n_runs(self) -> int:
        return sum(p.n_runs for p in self.cells)


def job_cells(cfg: DictConfig) -> list[tuple[dict, Any]]:
    """(task node, seed) of every cell of a job: from ``cells`` (set by the sweeper when it groups a multirun's
    tasks and seeds into one job per feature set: ``{tasks: [task nodes], pairs: [[task index, seed], ...]}``),
    else the job's own task and seed."""
    cells = cfg.get("cells")
    if cells is None:
        return [(plain(cfg.task), cfg.seed)]
    try:
        return [(plain(cells.tasks[int(i)]), seed) for i, seed in cells.pairs]
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as err:
        raise ConfigError("cells must be {tasks: [task configs], pairs: [[task index, seed], ...]} (the sweeper "
                          f"writes it; leave it null otherwise), got {OmegaConf.to_yaml(cells).strip()!r}") from err


def check_experiment_name(name: Any) -> str:
    """``experiment_name`` becomes one folder under ``paths.results_dir``: a short name, no path separators."""
    if name is None or isinstance(name, bool) or not isinstance(name, str | int):
        raise ConfigError(f"experiment_name must be a name (1-100 letters, digits or . _ - + =), got {name!r}")
    text = str(name)
    if not EXPERIMENT_NAME.fullmatch(text):
        raise ConfigError(f"experiment_name must be 1-100 letters, digits or . _ - + = (no / and not starting with "
                          f"a dot), as it names a folder under paths.results_dir; got {text[:120]!r}")
    return text


#: The top-level keys of the composed config (config.yaml and its groups); anything else came from a +key= typo.
TOP_LEVEL_KEYS = ("mode", "seed", "device", "experiment_name", "grid", "cells", "nc1", "overwrite", "save_head",
                  "flush_every", "optimized_metric", "paths", "backbone", "dataset", "task", "norm", "gen", "agg",
                  "tracker", "extract")


def check_options(cfg: DictConfig) -> None:
    """No unknown top-level key; the job options: booleans are booleans, counts are positive integers."""
    unknown = sorted(set(cfg.keys()) - {*TOP_LEVEL_KEYS, "hydra"})  # a sweeper's compositions carry hydra
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown} (added with +key= or ++key=?); valid top-level keys: "
                          f"{', '.join(TOP_LEVEL_KEYS)}")
    if not isinstance(cfg.device, str) or not DEVICE.fullmatch(cfg.device):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {cfg.device!r}")
    for key in ("overwrite", "nc1"):
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"{key} must be true or false, got {cfg[key]!r}")
    flush_every = cfg.flush_every
    if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
        raise ConfigError(f"flush_every must be an integer >= 1 (rows buffered per part file), got {flush_every!r}")


def base_method(cfg: DictConfig, probe: bool = True) -> MethodSpec:
    """The base MethodSpec from the composed ``norm``/``gen``/``agg`` nodes; an external GEN function is imported
    and tried on a small made-up class here, before any work."""
    spec = MethodSpec.from_dict({"norm": plain(cfg.norm), "gen": plain(cfg.gen), "agg": plain(cfg.agg)})
    if spec.gen.target and probe:
        from imprint_bench.imprint.generate import probe_external_gen

        spec.gen.validate()
        probe_external_gen(spec.gen)
    return spec


def plan_cells(cfg: DictConfig, cells: list[tuple[Any, Any]] | None = None) -> list[PlannedCell]:
    """Validate a job's configuration and plan each of its cells (default: ``job_cells(cfg)``); no data is
    touched. The method grid is expanded once per distinct shot count."""
    check_experiment_name(cfg.experiment_name)
    check_options(cfg)
    cells = job_cells(cfg) if cells is None else cells
    dataset, backbone = plain(cfg.dataset), plain(cfg.backbone)
    features = feature_identity(dataset, backbone, ExtractSettings.from_cfg(plain(cfg.extract)))
    grid = plain(cfg.grid)
    base, lam = base_method(cfg), ridge_lambda(dataset, backbone)
    plans: dict[int, GridPlan] = {}
    out = []
    for task_node, seed in cells:
        task = TaskSpec.from_node(plain(task_node))
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
            raise PrunedError(f"task {cell.task!r} has {len(cell.classes or [])} classes: every configuration is "
                              "pruned (m-NN with m above its classes × k proxies); lower agg.m")
        out.append(PlannedCell(cell, plan, len(specs) * cell.steps, task))  # class-incremental: a row per step
    if cfg.get("save_head"):
        if len(out) != 1:
            raise ConfigError(f"save_head needs a single cell (one task and one seed), but this job has {len(out)}; "
                              "sweep without save_head, then save one configuration")
        if len(out[0].plan.specs) != 1:
            raise ConfigError(f"save_head needs a single configuration, but the grid has {len(out[0].plan.specs)}; "
                              "drop grid=")
        check_save_path(Path(str(cfg.save_head)).expanduser())
    return out


def check_save_path(path: Path) -> None:
    """A head can be written at ``path`` (a file path in a writable folder), checked before any work."""
    if path.is_dir():
        raise ConfigError(f"save_head={path} is a folder; give a file path, e.g. save_head={path / 'head.safetensors'}")
    check_writable_folder(path.parent, f"save_head={path}: cannot write into {path.parent}", "choose a writable folder")


def plan_job(cfg: DictConfig) -> JobSpec:
    """The job's frozen spec: its planned cells and everything else it reads from the config, checked. Options that
    do nothing in the chosen configuration are named in one printed note."""
    cells = plan_cells(cfg)
    searching = cfg.get("optimized_metric") is not None  # a tuning sweeper's space sets options it may not use
    unused = base_method(cfg, probe=False).unused_options() if cfg.grid is None and not searching else []
    if unused:
        log.warning("note: %s", "; ".join(unused))
    dataset, backbone = plain(cfg.dataset), plain(cfg.backbone)
    save_head = cfg.get("save_head")
    return JobSpec(
        experiment=str(cfg.experiment_name),
        results_dir=Path(str(cfg.paths.results_dir)),
        features=FeatureSource(dataset, backbone, ExtractSettings.from_cfg(plain(cfg.extract)),
                               str(cfg.paths.cache_dir), str(cfg.paths.data_root)),
        cells=tuple(cells),
        lam=ridge_lambda(dataset, backbone),
        device=str(cfg.device),
        overwrite=cfg.overwrite,
        nc1=cfg.nc1,
        flush_every=cfg.flush_every,
        save_head=Path(str(save_head)).expanduser() if save_head else None,
        optimized_metric=cfg.get("optimized_metric"),
    )
