"""A job: one feature set (backbone × dataset) evaluated over its cells (task × seed) and a method grid.

Each cell keeps its own folder of Parquet parts and its completion marker, whichever job evaluated it; a job
whose cells are all complete finishes without loading torch or the features (a warm re-run is cheap). The
evaluation itself lives in :mod:`imprint_bench.evaluate`.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from imprint_bench.errors import ConfigError
from imprint_bench.identity import stable_hash
from imprint_bench.plan import PlannedCell, describe_cells, plan_cells
from imprint_bench.results import ResultStore

log = logging.getLogger(__name__)


@dataclass
class JobSummary:
    cell: str
    planned: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    engine_s: float = 0.0  # of which in the imprinting itself (GEN, NORM, AGG, metrics): the rest is overhead
    failures: list[str] = field(default_factory=list)
    best: str = ""
    best_acc: float = -1.0
    invalid: dict[str, int] = field(default_factory=dict)  # grid combinations pruned as invalid, by reason
    pruned_mnn: int = 0  # mNN runs pruned because m exceeds a task's number of proxies
    objective: float | None = None  # the mean optimized_metric of the job's runs (for a tuning sweeper)

    def line(self) -> str:
        best = f"; best {self.best}" if self.best else ""
        pruned = [f"{n} invalid ({reason})" for reason, n in self.invalid.items()]
        if self.pruned_mnn:
            pruned.append(f"{self.pruned_mnn} mNN runs with m above the task's number of proxies")
        pruned_text = f"; pruned: {', '.join(pruned)}" if pruned else ""
        return (f"[{self.cell}] {self.planned} runs: {self.ok} ok, {self.failed} failed, {self.skipped} skipped "
                f"({self.seconds:.1f}s){pruned_text}{best}")


def run_job(cfg: DictConfig, tracker: Any = None) -> JobSummary:
    """Evaluate every cell of the job (its own task and seed, or the sweeper's ``cells``) against the
    method grid, appending rows to the experiment's ResultStore. Every cell is validated before any work;
    complete cells are skipped."""
    start = time.perf_counter()
    planned = plan_cells(cfg)
    check_objective(cfg, planned)
    store = ResultStore(Path(cfg.paths.results_dir) / cfg.experiment_name)
    summary = JobSummary(describe_cells([p.cell for p in planned]), invalid=dict(planned[0].plan.pruned))
    redo = bool(cfg.overwrite or cfg.get("save_head"))
    todo = []
    for p in planned:
        plan_hash = stable_hash(sorted(p.cell.run_hash(s) for s in p.plan.specs))
        if not redo and store.is_complete(p.cell.hash, plan_hash):
            summary.planned += len(p.plan.specs)
            summary.skipped += len(p.plan.specs)
        else:
            todo.append((p, plan_hash))
    if todo:
        store.check_writable()
        from tqdm.auto import tqdm

        from imprint_bench.evaluate import JobData, evaluate_cell, resolve_device

        data = JobData(cfg, resolve_device(cfg.device))
        total = sum(len(p.plan.specs) for p, _ in todo)
        progress = tqdm(total=total, desc=summary.cell, unit="run", leave=False,
                        disable=True if total < 2 else None)  # None: no progress frames when not on a terminal
        with sigterm_as_exit(), progress as bar:
            for p, plan_hash in todo:
                evaluate_cell(cfg, p.cell, p.plan.specs, plan_hash, store, data, tracker, summary, bar)
    summary.seconds = time.perf_counter() - start
    if cfg.get("optimized_metric"):
        summary.objective = job_objective(store, planned, str(cfg.optimized_metric))
    return summary


def check_objective(cfg: DictConfig, planned: list[PlannedCell]) -> None:
    """``optimized_metric`` (what a tuning sweeper maximises) must be read off held-out training rows: tuning on
    test accuracy would report optimistic numbers. So only ``val_acc``, and only with a validation split."""
    metric = cfg.get("optimized_metric")
    if metric is None:
        return
    if metric != "val_acc":
        raise ConfigError(f"optimized_metric must be val_acc (or null), got {metric!r}: a search must not select "
                          "on test-set numbers")
    if not all(p.cell.holdout.active for p in planned):
        raise ConfigError("optimized_metric=val_acc needs a validation split: set task.val_fraction (e.g. 0.2) "
                          "or task.val_per_class")


def job_objective(store: ResultStore, planned: list[PlannedCell], metric: str) -> float:
    """Mean ``metric`` over the job's ok rows (fresh or from an earlier run: a repeated trial reads its rows)."""
    import pandas as pd

    wanted = {p.cell.run_hash(s) for p in planned for s in p.plan.specs}
    values = []
    for p in planned:
        for part in sorted(store.cell_dir(p.cell.hash).glob("*.parquet")):
            rows = pd.read_parquet(part, columns=["run_hash", "status", metric])
            values += rows.loc[rows["run_hash"].isin(wanted) & rows["status"].eq("ok"), metric].tolist()
    if not values:
        raise ConfigError(f"no successful run to compute {metric} from (every configuration failed)")
    return float(sum(values) / len(values))


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


