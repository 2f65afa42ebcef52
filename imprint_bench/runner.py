"""A job: one cell (backbone, dataset, task, seed) evaluated against a method grid.

Features come from the cache once, proxies are shared across every NORMpost/NORMinf/AGG variant
(and across tasks within a process), finished runs are skipped by hash, and every run produces
exactly one row: ``ok`` with metrics, or ``failed`` with the error.
"""

from __future__ import annotations

import json
import logging
import platform
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from imprint_bench.data import FEATURE_KINDS, backbone_label, load_feature_set
from imprint_bench.data.tasks import Task, make_task
from imprint_bench.errors import ConfigError
from imprint_bench.grid import GridPlan, expand_grid, prune_for_task
from imprint_bench.imprint.pipeline import ProxyCache, Workspace
from imprint_bench.imprint.spec import JOINT_GEN, MethodSpec, preset_name, stable_hash
from imprint_bench.results import ResultStore, RowWriter

log = logging.getLogger(__name__)

#: Shared by every job of this process (Hydra's basic launcher runs jobs sequentially in-process).
PROXY_CACHE = ProxyCache()

#: NC1 values by (feature key, task classes, shots, few-shot seed), for the same reason.
NC1_MEMO: dict[tuple, dict[str, float]] = {}

NO_NC1 = {"nc1": float("nan"), "nc1_ref": float("nan")}

#: Metric columns of a failed run (present so every part file has the same schema).
FAILED_METRICS = {"acc": float("nan"), "macro_f1": float("nan"), "balanced_acc": float("nan"), "per_class_f1": [],
                  "gen_s": float("nan"), "infer_s": float("nan"), "n_proxies": 0}

#: Dataset/backbone fields that stay out of cell hashes: they do not change the numbers, or (ls_lambda) they
#: do so through the method spec, which carries the effective λ.
NON_SEMANTIC_KEYS = ("download", "num_workers", "batch_size", "ls_lambda")


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; otherwise the named device (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but CUDA is not available here; use device=cpu or device=auto")
    return device


def library_versions() -> dict[str, str]:
    """Versions recorded in every result row (k-means and GEMM results can differ between releases)."""
    import faiss
    import numpy
    import timm

    import imprint_bench

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "faiss": faiss.__version__, "timm": timm.__version__, "imprint_bench": imprint_bench.__version__}


def _semantic(cfg: DictConfig | dict) -> dict:
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    return {k: v for k, v in plain.items() if k not in NON_SEMANTIC_KEYS}


@dataclass
class Cell:
    """What one job evaluates: identity fields and their hash."""

    backbone: str
    dataset: str
    mapping: str
    task: str
    classes: list[int] | None
    shots: int
    seed: int
    identity: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def hash(self) -> str:
        return stable_hash(self.identity)

    def run_hash(self, spec: MethodSpec) -> str:
        return stable_hash({"cell": self.identity, "method": spec.to_dict()})

    def describe(self) -> str:
        shots = f" shots={self.shots}" if self.shots > 0 else ""
        return f"{self.backbone} / {self.dataset} / {self.task}{shots} / seed={self.seed}"


def _file_stamp(path: str) -> dict[str, Any]:
    """Size and modification time of a file: a changed file at the same path is a new identity."""
    p = Path(path).expanduser()
    if not p.is_file():
        return {"path": str(p), "missing": True}
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def make_cell(cfg: DictConfig) -> Cell:
    """The job's cell and its identity: everything that changes its numbers except the method."""
    dataset = _semantic(cfg.dataset)
    backbone: dict[str, Any] = {}
    if dataset.get("kind") in FEATURE_KINDS:
        if dataset.get("path"):
            dataset["file"] = _file_stamp(dataset["path"])
    else:
        backbone = _semantic(cfg.backbone)
        if backbone.get("checkpoint"):
            backbone["checkpoint_file"] = _file_stamp(backbone["checkpoint"])
        backbone["amp"] = bool(cfg.extract.get("amp", False))  # bf16 features differ from fp32 ones
    classes = list(cfg.task.classes) if cfg.task.classes is not None else None
    identity = {"dataset": dataset, "backbone": backbone, "task": {"classes": classes, "shots": int(cfg.task.shots)},
                "seed": int(cfg.seed)}
    return Cell(backbone_label(cfg.dataset, cfg.backbone), str(dataset.get("name")),
                str(dataset.get("mapping") or "none"), str(cfg.task.name), classes, int(cfg.task.shots), int(cfg.seed),
                identity)


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


def plan_job(cfg: DictConfig) -> tuple[Cell, GridPlan]:
    """Validate the configuration and expand its method grid (no data is touched)."""
    grid = OmegaConf.to_container(cfg.grid, resolve=True) if cfg.grid is not None else None
    plan = expand_grid(method_from_cfg(cfg), grid, int(cfg.task.shots))
    lam = ridge_lambda(cfg)
    plan.specs = list(dict.fromkeys(_with_lambda(s, lam) for s in plan.specs))
    if not plan.specs:
        raise ConfigError(f"the method grid has no valid configuration; pruned: {plan.pruned}")
    if cfg.get("save_head") and len(plan.specs) != 1:
        raise ConfigError(f"save_head needs a single configuration, but the grid has {len(plan.specs)}; drop grid=")
    return make_cell(cfg), plan


@dataclass
class JobSummary:
    cell: str
    planned: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    best: str = ""

    def line(self) -> str:
        best = f"; best {self.best}" if self.best else ""
        return (f"[{self.cell}] {self.planned} runs: {self.ok} ok, {self.failed} failed, {self.skipped} skipped "
                f"({self.seconds:.1f}s){best}")


def _nc1_columns(task: Task, feature_key: str, seed: int) -> dict[str, float]:
    """NC1 of the task's L2-normalised train features, textbook and with the reference's centring; computed
    once per task data in a process (it depends on the seed only through a few-shot sample)."""
    key = (feature_key, tuple(task.labels), task.shots, seed if task.shots > 0 else None)
    if key not in NC1_MEMO:
        from imprint_bench.report.nc import nc1

        x, y = task.train_xy()
        x = torch.nn.functional.normalize(x, dim=1)
        try:
            NC1_MEMO[key] = {"nc1": nc1(x, y), "nc1_ref": nc1(x, y, reference_centring=True)}
        except Exception as err:  # NC1 is an annotation; never fail the runs for it
            log.warning("NC1 could not be computed: %s", err)
            NC1_MEMO[key] = {"nc1": float("nan"), "nc1_ref": float("nan")}
    return NC1_MEMO[key]


def run_job(cfg: DictConfig, tracker: Any = None) -> JobSummary:
    """Evaluate one cell against the method grid, appending rows to the experiment's ResultStore."""
    start = time.perf_counter()
    cell, plan = plan_job(cfg)
    store = ResultStore(Path(cfg.paths.results_dir) / cfg.experiment_name)
    summary = JobSummary(cell.describe(), planned=len(plan.specs))
    hashes = [cell.run_hash(s) for s in plan.specs]
    plan_hash = stable_hash(sorted(hashes))
    if not cfg.overwrite and not cfg.get("save_head") and store.is_complete(cell.hash, plan_hash):
        summary.skipped = len(plan.specs)
        summary.seconds = time.perf_counter() - start
        return summary
    done = set() if cfg.overwrite else store.done_hashes(cell.hash)
    device = resolve_device(cfg.device)
    features = load_feature_set(cfg.dataset, cfg.backbone, cfg.extract, cfg.paths.cache_dir, cfg.paths.data_root,
                                device)
    task = make_task(features, cell.task, cell.classes, cell.shots, cell.seed)
    specs, n_degenerate = prune_for_task(plan.specs, task.n_classes)
    summary.planned = len(specs)
    pending = [(s, cell.run_hash(s)) for s in specs if cell.run_hash(s) not in done]
    summary.skipped = len(specs) - len(pending)
    PROXY_CACHE.retain(features.key)
    workspace = Workspace(task, cell.seed, ridge_lambda(cfg), features.key, PROXY_CACHE)
    base_row = {
        "experiment": str(cfg.experiment_name), "backbone": cell.backbone, "dataset": cell.dataset,
        "mapping": cell.mapping, "task": cell.task, "seed": cell.seed, "shots": cell.shots,
        "n_classes": task.n_classes, "n_train": task.n_train, "n_test": int(task.y_test.shape[0]),
        "feature_key": features.key, "cell_hash": cell.hash, "device": str(device),
        "versions": json.dumps(library_versions(), sort_keys=True),
        **(_nc1_columns(task, features.key, cell.seed) if pending and cfg.nc1 else NO_NC1),
    }
    writer = store.writer(cell.hash, flush_every=int(cfg.flush_every))
    with sigterm_as_exit():
        try:
            _evaluate(pending, base_row, workspace, writer, tracker, summary)
        finally:
            writer.flush()
    if summary.failed == 0:
        store.mark_complete(cell.hash, plan_hash, len(specs))
    if cfg.get("save_head"):
        if summary.failed or not specs:
            raise ConfigError(f"no head saved: the configuration {'failed' if specs else 'was pruned'} "
                              f"({'; '.join(summary.failures) or 'm exceeds the number of proxies'})")
        save_head(cfg, workspace, specs[0], cell)
    if n_degenerate:
        log.info("pruned %d mNN configurations with m > the task's number of proxies", n_degenerate)
    summary.seconds = time.perf_counter() - start
    return summary


def _evaluate(pending: list[tuple[MethodSpec, str]], base_row: dict[str, Any], workspace: Workspace,
              writer: RowWriter, tracker: Any, summary: JobSummary) -> None:
    """Evaluate each pending configuration into one row (ok or failed) and hand it to the writer."""
    m_needed = _largest_m_per_group([spec for spec, _ in pending])
    best_acc = -1.0
    shots = int(base_row["shots"])
    for spec, run_hash in tqdm(pending, desc=summary.cell, unit="run", leave=False, disable=len(pending) < 2):
        row = {**base_row, "run_hash": run_hash, "method": preset_name(spec, shots), **spec.to_flat()}
        try:
            row.update(workspace.evaluate(spec, m_needed.get(_agg_group(spec))), status="ok", error="")
            summary.ok += 1
            if row["acc"] > best_acc:
                best_acc = row["acc"]
                summary.best = f"{best_acc:.2f}% ({row['method']}: {spec.gen.name} k={spec.gen.k}, {spec.agg.name})"
        except Exception as err:  # one failed configuration must not stop the sweep
            row.update(FAILED_METRICS, status="failed", error=f"{type(err).__name__}: {err}")
            summary.failed += 1
            summary.failures.append(f"{spec.to_flat()}: {row['error']}")
            log.debug("run failed:\n%s", traceback.format_exc())
        row["created_at"] = datetime.now(UTC).isoformat(timespec="microseconds")
        writer.add(row)
        if tracker is not None:
            tracker.log_row(row)


@contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SLURM (scancel, time limit) and process pools stop jobs with SIGTERM: raise SystemExit instead, so
    ``finally`` blocks flush the rows already computed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def save_head(cfg: DictConfig, workspace: Workspace, spec: MethodSpec, cell: Cell) -> Path:
    """Save the job's imprinted head; image datasets also store the backbone config (a usable model)."""
    extra = {"dataset": cell.dataset, "task": cell.task, "labels": json.dumps(workspace.task.labels)}
    if cell.identity["backbone"]:
        extra["backbone"] = json.dumps(cell.identity["backbone"])
    path = workspace.head(spec).to("cpu").save(Path(str(cfg.save_head)).expanduser(), extra)
    log.info("imprinted head saved to %s", path)
    return path


def _agg_group(spec: MethodSpec) -> tuple:
    return (spec.norm_pre, spec.gen, spec.norm_post, spec.norm_inf, spec.agg.distance)


def _largest_m_per_group(specs: list[MethodSpec]) -> dict[tuple, int]:
    """Largest m among mNN variants that share proxies and distance: one neighbour search serves all."""
    out: dict[tuple, int] = {}
    for s in specs:
        if s.agg.name == "mnn":
            out[_agg_group(s)] = max(out.get(_agg_group(s), 0), s.agg.m)
    return out
