"""Evaluating the cells of a job: features loaded once, tasks and workspaces shared, one row per configuration.

Every run produces exactly one row: ``ok`` with metrics, or ``failed`` with the error. Proxies are shared across
every NORMpost/NORMinf/AGG variant, across tasks and (for seed-free GEN such as mean and LS) across seeds.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from imprint_bench.data.base import FeatureSet
from imprint_bench.data.tasks import Task, make_task
from imprint_bench.errors import ConfigError, PrunedError, stops_the_job
from imprint_bench.features import load_feature_set
from imprint_bench.grid import prune_for_task
from imprint_bench.identity import recorded_versions
from imprint_bench.imprint.head import ImprintedHead
from imprint_bench.imprint.incremental import extend_head
from imprint_bench.imprint.metrics import classification_metrics
from imprint_bench.imprint.nc import MAX_SCATTER_CLASSES, ClassScatter, class_scatter, nc1_both, nc1_of_classes
from imprint_bench.imprint.pipeline import ProxyCache, Workspace
from imprint_bench.imprint.spec import MethodSpec, preset_name
from imprint_bench.plan import Cell, FeatureSource, JobSpec, PlannedCell
from imprint_bench.results import CellOutcome, ResultStore, RowWriter
from imprint_bench.rng import generator
from imprint_bench.schema import FAILED_METRICS, NO_NC1

if TYPE_CHECKING:
    from imprint_bench.tracking import Tracker

log = logging.getLogger(__name__)

#: Shared by every job of this process (Hydra's basic launcher runs jobs sequentially in-process).
PROXY_CACHE = ProxyCache()

#: NC1 values by (feature key, task classes, shots, few-shot seed), for the same reason.
NC1_MEMO: dict[tuple, dict[str, float]] = {}

#: Per-class moments of each feature set's L2-normalised train rows (NC1 of any whole-class task), by feature key.
SCATTER_MEMO: dict[str, ClassScatter] = {}


def _nc1_columns(task: Task, features: FeatureSet, seed: int) -> dict[str, float]:
    """NC1 of the task's L2-normalised train features, textbook and with the reference's centring; computed
    once per task data in a process (it depends on the seed only through a few-shot sample or a validation split).
    A task of whole classes reads it off the feature set's per-class moments, computed once for all its tasks."""
    key = (features.key, tuple(task.labels), task.shots, task.n_val, seed if task.seed_drawn else None)
    if key not in NC1_MEMO:
        try:
            if _whole_classes(task, features):
                textbook, reference = nc1_of_classes(_class_scatter(features), task.labels)
            else:
                x, y = task.train_xy()
                textbook, reference = nc1_both(torch.nn.functional.normalize(x, dim=1), y)
            NC1_MEMO[key] = {"nc1": textbook, "nc1_ref": reference}
        except Exception as err:  # NC1 is an annotation; never fail the runs for it
            if stops_the_job(err):
                raise
            log.warning("NC1 could not be computed: %s", err)
            NC1_MEMO[key] = {"nc1": float("nan"), "nc1_ref": float("nan")}
    return NC1_MEMO[key]


def _whole_classes(task: Task, features: FeatureSet) -> bool:
    """Whether the task trains on every row of each of its classes (no few-shot sample, no validation split), in a
    feature set with few enough classes to keep their moments."""
    labels = features.class_labels()
    return (len(labels) <= MAX_SCATTER_CLASSES and set(task.labels) <= set(labels)
            and all(x is features.class_rows(label) for x, label in zip(task.train, task.labels, strict=True)))


def _class_scatter(features: FeatureSet) -> ClassScatter:
    """The feature set's per-class moments; only the current job's feature set is kept (as ProxyCache.retain)."""
    if features.key not in SCATTER_MEMO:
        SCATTER_MEMO.clear()
        labels = features.class_labels()
        blocks = [torch.nn.functional.normalize(features.class_rows(label), dim=1) for label in labels]
        SCATTER_MEMO[features.key] = class_scatter(blocks, labels)
    return SCATTER_MEMO[features.key]


class JobData:
    """What the cells of one job share: the feature set (loaded on first use) and one Workspace per task,
    reused across seeds. A few-shot task depends on its seed, so its Workspace is used once and not kept
    (a few-shot sweep has many: keeping their normalised copies would only hold memory)."""

    def __init__(self, source: FeatureSource, device: torch.device) -> None:
        self.source = source
        self.device = device
        self._features: FeatureSet | None = None
        self._workspaces: dict[tuple, Workspace] = {}

    @property
    def features(self) -> FeatureSet:
        if self._features is None:
            src = self.source
            self._features = load_feature_set(src.dataset, src.backbone, src.extract, src.cache_dir, src.data_root,
                                              self.device)
            PROXY_CACHE.retain(self._features.key)
        return self._features

    def workspace(self, cell: Cell, lam: float) -> Workspace:
        key = (cell.task, tuple(cell.classes or ()), cell.classes is None, cell.shots, cell.unseen_test, lam)
        workspace = None if cell.seed_drawn else self._workspaces.get(key)
        if workspace is None:
            task = make_task(self.features, cell.task, cell.classes, cell.shots, cell.seed, cell.unseen_test,
                             cell.holdout)
            if task.n_test_excluded:
                log.warning("[%s] %d test rows of classes without training rows are excluded (task.unseen_test="
                            "exclude)", cell.describe(), task.n_test_excluded)
            workspace = Workspace(task, cell.seed, lam, self.features.key, PROXY_CACHE)
            if not cell.seed_drawn:
                self._workspaces[key] = workspace
        return workspace.with_seed(cell.seed)


def evaluate_cell(job: JobSpec, planned: PlannedCell, data: JobData, store: ResultStore,
                  tracker: Tracker | None = None, advance: Callable[[int], Any] = lambda n: None) -> CellOutcome:
    """One cell that is not complete: evaluate its pending configurations (skipping those with an ok row),
    flush its rows and mark it complete when none failed; ``advance(n)`` is told of every n runs dealt with."""
    cell = planned.cell
    if cell.steps > 1:
        return evaluate_incremental_cell(job, planned, data, store, tracker, advance)
    done = set() if job.overwrite else store.done_hashes(cell.hash)
    workspace = data.workspace(cell, job.lam)
    task = workspace.task
    kept, n_degenerate = prune_for_task(planned.plan.specs, task.n_classes)
    if not kept:
        raise PrunedError(f"[{cell.describe()}] every configuration was pruned: m-NN with m above the task's "
                          f"{task.n_classes} classes × k proxies (largest m: "
                          f"{max(s.agg.m for s in planned.plan.specs)}); lower agg.m")
    pending = [(s, h) for s in kept if (h := cell.run_hash(s)) not in done]
    outcome = CellOutcome(planned=len(kept), skipped=len(kept) - len(pending), pruned_mnn=n_degenerate)
    advance(n_degenerate + outcome.skipped)
    features = data.features
    base_row = {
        "experiment": job.experiment, "backbone": cell.backbone, "dataset": cell.dataset,
        "mapping": cell.mapping, "task": cell.task, "task_key": cell.task_key, "seed": cell.seed, "shots": cell.shots,
        "n_classes": task.n_classes, "n_train": task.n_train, "n_test": int(task.y_test.shape[0]),
        "n_val": task.n_val,
        "n_test_excluded": task.n_test_excluded,
        "feature_key": features.key, "cell_hash": cell.hash, "device": str(data.device),
        "versions": recorded_versions(),
        **(_nc1_columns(task, features, cell.seed) if pending and job.nc1 else NO_NC1),
    }
    writer = store.writer(cell.hash, flush_every=job.flush_every)
    try:
        _evaluate(pending, base_row, workspace, writer, tracker, outcome, advance)
    finally:
        writer.flush()
    if not outcome.failed:
        store.mark_complete(cell.hash, planned.plan_hash, len(kept))
    if job.save_head is not None:
        if outcome.failed:
            raise ConfigError(f"no head saved: the configuration failed ({'; '.join(outcome.failures)})")
        save_head(job.save_head, workspace, kept[0], cell)
    return outcome


def _evaluate(pending: list[tuple[MethodSpec, str]], base_row: dict[str, Any], workspace: Workspace,
              writer: RowWriter, tracker: Tracker | None, outcome: CellOutcome,
              advance: Callable[[int], Any]) -> None:
    """Evaluate each pending configuration into one row (ok or failed), hand it to the writer and count it in
    ``outcome`` (the cell's own record, made by :func:`evaluate_cell`)."""
    m_needed = _largest_m_per_group([spec for spec, _ in pending])
    shots = int(base_row["shots"])
    for spec, run_hash in pending:
        row = {**base_row, "run_hash": run_hash, "method": preset_name(spec, shots), **spec.to_flat()}
        start = time.perf_counter()
        try:
            row.update(workspace.evaluate(spec, m_needed.get(_agg_group(spec))), status="ok", error="")
            outcome.ok += 1
        except Exception as err:  # one failed configuration must not stop the sweep
            if stops_the_job(err):
                raise
            row.update(FAILED_METRICS, status="failed", error=f"{type(err).__name__}: {err}")
            outcome.failed += 1
            outcome.failures.append(f"{spec.to_flat()}: {row['error']}")
            log.debug("run failed:\n%s", traceback.format_exc())
        outcome.engine_s += time.perf_counter() - start
        row["created_at"] = datetime.now(UTC).isoformat(timespec="microseconds")
        writer.add(row)
        advance(1)
        if tracker is not None:
            tracker.log_row(row)


def evaluate_incremental_cell(job: JobSpec, planned: PlannedCell, data: JobData, store: ResultStore,
                              tracker: Tracker | None = None,
                              advance: Callable[[int], Any] = lambda n: None) -> CellOutcome:
    """The class-incremental protocol on one cell: the task's classes in ``steps`` groups (the cell's order, or one
    drawn from its seed); each configuration imprints the first group, then grows its head group by group from
    that group's rows only (:func:`imprint.incremental.extend_head`). After each step a row: accuracy on all classes
    seen so far, on the first group's classes, and of imprinting the seen classes at once (``joint_acc``). Each
    step's row has its own run hash, so an interrupted cell resumes."""
    cell = planned.cell
    if job.save_head is not None:
        raise ConfigError("save_head saves one head: not with task.steps > 1 (use imprint-bench-extend to grow one)")
    features = data.features
    groups = class_groups(cell, data.workspace(cell, job.lam).task.labels)
    kept, n_degenerate = prune_for_task(planned.plan.specs, len(groups[0]))
    if not kept:
        raise PrunedError(f"[{cell.describe()}] every configuration was pruned: m-NN with m above the first step's "
                          f"{len(groups[0])} classes × k proxies; lower agg.m")
    done = set() if job.overwrite else store.done_hashes(cell.hash)
    hashes = {spec: [cell.run_hash(spec, t) for t in range(len(groups))] for spec in kept}
    pending = [spec for spec in kept if not all(h in done for h in hashes[spec])]
    steps = len(groups)
    outcome = CellOutcome(planned=len(kept) * steps, skipped=(len(kept) - len(pending)) * steps,
                          pruned_mnn=n_degenerate * steps)
    advance(outcome.pruned_mnn + outcome.skipped)
    base_row = {
        "experiment": job.experiment, "backbone": cell.backbone, "dataset": cell.dataset, "mapping": cell.mapping,
        "task": cell.task, "task_key": cell.task_key, "seed": cell.seed, "shots": cell.shots, "n_val": 0,
        "n_test_excluded": 0, "feature_key": features.key, "cell_hash": cell.hash, "device": str(data.device),
        "versions": recorded_versions(), **NO_NC1,
    }
    writer = store.writer(cell.hash, flush_every=job.flush_every)
    try:
        for spec in pending:
            start = time.perf_counter()
            try:
                rows = incremental_rows(spec, groups, features, cell, job.lam)
                outcome.ok += sum(h not in done for h in hashes[spec])
            except Exception as err:  # one failed configuration must not stop the sweep
                if stops_the_job(err):
                    raise
                rows = [dict(FAILED_METRICS, step=t, n_seen_classes=sum(map(len, groups[:t + 1])),
                             status="failed", error=f"{type(err).__name__}: {err}") for t in range(steps)]
                outcome.failed += steps
                outcome.failures.append(f"{spec.to_flat()}: {rows[0]['error']}")
                log.debug("run failed:\n%s", traceback.format_exc())
            outcome.engine_s += time.perf_counter() - start
            for row, run_hash in zip(rows, hashes[spec], strict=True):
                if run_hash in done:
                    continue
                row = {**base_row, "run_hash": run_hash, "method": preset_name(spec, -1), **spec.to_flat(), **row,
                       "created_at": datetime.now(UTC).isoformat(timespec="microseconds")}
                writer.add(row)
                advance(1)
                if tracker is not None:
                    tracker.log_row(row)
    finally:
        writer.flush()
    if not outcome.failed:
        store.mark_complete(cell.hash, planned.plan_hash, len(kept) * steps)
    return outcome


def class_groups(cell: Cell, labels: list[int]) -> list[list[int]]:
    """The task's classes in ``cell.steps`` near-equal groups, in the cell's order or one drawn from its seed."""
    if cell.order is not None:
        if sorted(cell.order) != sorted(labels):
            raise ConfigError(f"[{cell.describe()}] task.order {cell.order} must list exactly the task's classes "
                              f"{labels}")
        order = list(cell.order)
    else:
        perm = torch.randperm(len(labels), generator=generator(cell.seed, "class_order"))
        order = [labels[i] for i in perm.tolist()]
    if cell.steps > len(order):
        raise ConfigError(f"[{cell.describe()}] task.steps={cell.steps} exceeds the task's {len(order)} classes")
    return [[int(c) for c in chunk] for chunk in np.array_split(np.array(order), cell.steps)]


def incremental_rows(spec: MethodSpec, groups: list[list[int]], features: FeatureSet, cell: Cell,
                     lam: float) -> list[dict[str, Any]]:
    """One configuration through the steps: a row of metrics per step (see :func:`evaluate_incremental_cell`)."""
    names = features.class_names

    def task_of(classes: list[int]) -> Task:
        return make_task(features, cell.task, classes, -1, cell.seed, cell.unseen_test)

    start = time.perf_counter()
    head = ImprintedHead.from_workspace(Workspace(task_of(groups[0]), cell.seed, lam, features.key, PROXY_CACHE), spec)
    grow_s = time.perf_counter() - start
    rows, seen = [], []
    for step, group in enumerate(groups):
        if step:
            start = time.perf_counter()
            head = extend_head(head, [features.class_rows(c) for c in group],
                               [names[c] if c < len(names) else str(c) for c in group], labels=group).head
            grow_s = time.perf_counter() - start
        seen += group
        task = task_of(seen)  # the seen classes' test rows, numbered in the head's order
        start = time.perf_counter()
        pred = head.predict(task.x_test)
        infer_s = time.perf_counter() - start
        first = task.y_test < len(groups[0])
        first_acc = 100.0 * float((pred[first] == task.y_test[first]).float().mean())
        joint = Workspace(task, cell.seed, lam, features.key, PROXY_CACHE).evaluate(spec)
        rows.append({
            **classification_metrics(pred, task.y_test, task.n_classes), "val_acc": float("nan"),
            "joint_acc": joint["acc"], "first_step_acc": first_acc,
            "step": step, "n_seen_classes": len(seen), "n_classes": len(seen), "n_train": task.n_train,
            "n_test": int(task.y_test.shape[0]), "gen_s": grow_s, "infer_s": infer_s, "n_proxies": head.n_proxies,
            "proxies_per_class": torch.bincount(head.owner, minlength=head.n_classes).tolist(),
            "status": "ok", "error": "",
        })
    return rows


def save_head(path: Path, workspace: Workspace, spec: MethodSpec, cell: Cell) -> Path:
    """Save the job's imprinted head; image datasets also store the backbone config (a usable model)."""
    extra = {"dataset": cell.dataset, "task": cell.task, "labels": json.dumps(workspace.task.labels),
             "backbone_label": cell.backbone}
    if cell.identity["backbone"]:
        extra["backbone"] = json.dumps(cell.identity["backbone"])
    saved = ImprintedHead.from_workspace(workspace, spec).to("cpu").save(path, extra)
    log.info("imprinted head saved to %s", saved)
    return saved


def _agg_group(spec: MethodSpec) -> tuple:
    return (spec.norm_pre, spec.gen, spec.norm_post, spec.norm_inf, spec.agg.distance)


def _largest_m_per_group(specs: list[MethodSpec]) -> dict[tuple, int]:
    """Largest m among mNN variants that share proxies and distance: one neighbour search serves all."""
    out: dict[tuple, int] = {}
    for s in specs:
        if s.agg.name == "mnn":
            out[_agg_group(s)] = max(out.get(_agg_group(s), 0), s.agg.m)
    return out
