"""A job: one feature set (backbone × dataset) evaluated over its cells (task × seed) and a method grid.

Each cell keeps its own folder of Parquet parts and its completion marker, whichever job evaluated it; a job
whose cells are all complete finishes without loading torch or the features (a warm re-run is cheap). The
evaluation itself lives in :mod:`imprint_bench.evaluate`.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from imprint_bench.errors import ConfigError
from imprint_bench.plan import JobSpec, describe_cells, plan_job
from imprint_bench.results import CellOutcome, ResultStore

if TYPE_CHECKING:
    from imprint_bench.tracking import Tracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSummary:
    """What a job did (the sum of its cells' outcomes) and, for a tuning sweeper, its objective."""

    cell: str
    planned: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    engine_s: float = 0.0  # of which in the imprinting itself (GEN, NORM, AGG, metrics): the rest is overhead
    failures: tuple[str, ...] = ()
    invalid: dict[str, int] = field(default_factory=dict)  # grid combinations pruned as invalid, by reason
    pruned_mnn: int = 0  # mNN runs pruned because m exceeds a task's number of proxies
    objective: float | None = None  # the mean optimized_metric of the job's runs (for a tuning sweeper)

    def line(self) -> str:
        pruned = [f"{n} invalid ({reason})" for reason, n in self.invalid.items()]
        if self.pruned_mnn:
            pruned.append(f"{self.pruned_mnn} mNN runs with m above the task's number of proxies")
        pruned_text = f"; pruned: {', '.join(pruned)}" if pruned else ""
        return (f"[{self.cell}] {self.planned} runs: {self.ok} ok, {self.failed} failed, {self.skipped} skipped "
                f"({self.seconds:.1f}s){pruned_text}")


def run_job(cfg: DictConfig, tracker: Tracker | None = None) -> JobSummary:
    """Plan the job (:func:`plan.plan_job`: every cell validated before any work), then evaluate its cells that
    are not complete against the method grid, appending rows to the experiment's ResultStore."""
    return run_planned(plan_job(cfg), tracker)


def run_planned(job: JobSpec, tracker: Tracker | None = None) -> JobSummary:
    """Evaluate a planned job; complete cells are skipped without loading torch or the features."""
    start = time.perf_counter()
    check_objective(job)
    store = ResultStore(job.experiment_dir)
    redo = job.overwrite or job.save_head is not None
    todo = [p for p in job.cells if redo or not store.is_complete(p.cell.hash, p.plan_hash)]
    done = [CellOutcome(planned=len(p.plan.specs), skipped=len(p.plan.specs)) for p in job.cells if p not in todo]
    if todo:
        store.check_writable()
        from tqdm.auto import tqdm

        with kept_for_good():
            from imprint_bench.backbones import resolve_device
            from imprint_bench.evaluate import JobData, evaluate_cell

        data = JobData(job.features, resolve_device(job.device))
        total = sum(len(p.plan.specs) for p in todo)
        progress = tqdm(total=total, desc=describe_cells([p.cell for p in job.cells]), unit="run", leave=False,
                        disable=True if total < 2 else None)  # None: no progress frames when not on a terminal
        with sigterm_as_exit(), progress as bar:
            advance = Progress(bar, total)
            for p in todo:
                done.append(evaluate_cell(job, p, data, store, tracker, advance))
    return JobSummary(
        cell=describe_cells([p.cell for p in job.cells]),
        planned=sum(o.planned for o in done),
        ok=sum(o.ok for o in done), failed=sum(o.failed for o in done), skipped=sum(o.skipped for o in done),
        seconds=time.perf_counter() - start, engine_s=sum(o.engine_s for o in done),
        failures=tuple(f for o in done for f in o.failures), invalid=dict(job.cells[0].plan.pruned),
        pruned_mnn=sum(o.pruned_mnn for o in done),
        objective=job_objective(store, job) if job.optimized_metric else None,
    )


class Progress:
    """Counts the runs dealt with: a progress bar on a terminal; elsewhere (a SLURM or joblib log file) a line every
    ``every_s`` seconds, so that a long job's log shows how far it is."""

    def __init__(self, bar: Any, total: int, every_s: float = 30.0) -> None:
        self.bar, self.total, self.every_s = bar, total, every_s
        self.done = 0
        self.start = self.last = time.monotonic()

    def __call__(self, n: int) -> None:
        self.bar.update(n)
        self.done += n
        now = time.monotonic()
        if self.bar.disable and n and now - self.last >= self.every_s and self.done < self.total:
            self.last = now
            log.info("progress: %d of %d runs done, %d left (%.0f s)", self.done, self.total, self.total - self.done,
                     now - self.start)


def check_objective(job: JobSpec) -> None:
    """``optimized_metric`` (what a tuning sweeper maximises) must be read off held-out training rows: tuning on
    test accuracy would report optimistic numbers. So only ``val_acc``, and only with a validation split."""
    metric = job.optimized_metric
    if metric is None:
        return
    if metric != "val_acc":
        raise ConfigError(f"optimized_metric must be val_acc (or null), got {metric!r}: a search must not select "
                          "on test-set numbers")
    if not all(p.cell.holdout.active for p in job.cells):
        raise ConfigError("optimized_metric=val_acc needs a validation split: set task.val_fraction (e.g. 0.2) "
                          "or task.val_per_class")


def job_objective(store: ResultStore, job: JobSpec) -> float:
    """Mean ``optimized_metric`` over the job's ok rows (fresh or from an earlier run: a repeated trial reads its
    rows)."""
    import pandas as pd

    metric = str(job.optimized_metric)
    wanted = {p.cell.run_hash(s) for p in job.cells for s in p.plan.specs}
    values = []
    for p in job.cells:
        for part in sorted(store.cell_dir(p.cell.hash).glob("*.parquet")):
            rows = pd.read_parquet(part, columns=["run_hash", "status", metric])
            values += rows.loc[rows["run_hash"].isin(wanted) & rows["status"].eq("ok"), metric].tolist()
    if not values:
        raise ConfigError(f"no successful run to compute {metric} from (every configuration failed)")
    return float(sum(values) / len(values))


@contextmanager
def kept_for_good() -> Iterator[None]:
    """For the import of torch, whose objects (some 200,000) live until exit: no garbage collection while it runs,
    then those objects, and all before them (imports, configurations), are moved out of the collector's sight, so
    that no full collection scans them again (each would cost 0.05–0.1 s here). Only in a process that has not
    loaded torch yet (a command's first job; not in a process that already holds other objects, e.g. pytest)."""
    if "torch" in sys.modules or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


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


