"""Experiment trackers behind one small interface: ``none`` (default), ``wandb`` (online or offline), ``mlflow``.

Both real trackers write one tracker run per evaluated configuration (one result row: a cell × a method), whose
config/params are the row's own fields (backbone, dataset, task, seed and every stage option, see ``FIELDS``) and
whose metrics are ``METRICS``; and one run per collect/report step holding the merged table, the report's tables and
figures. Everything is buffered and written when the job (or step) finishes, so tracking never slows the evaluation
loop. Parquet stays the source of truth.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import pandas as pd
from omegaconf import DictConfig

from imprint_bench.errors import ConfigError, check_choice, check_writable_folder
from imprint_bench.imprint.registry import config_text
from imprint_bench.schema import CELL_COLUMNS, SCALAR_METRICS, STAGE_COLUMNS

log = logging.getLogger("imprint_bench")

TRACKERS = ("none", "wandb", "mlflow")
# a configuration's filterable fields and its metrics: result columns by their role in the schema
FIELDS = (*CELL_COLUMNS, "method", *STAGE_COLUMNS, "status", "run_hash")
METRICS = tuple(SCALAR_METRICS)
CONFIGURATION = "configuration"  # the job_type / role of a per-configuration run
WANDB_THREADS = 8  # configuration runs created at once (wandb.init waits on its service, not on the CPU)


class Tracker(Protocol):
    """The one interface every sink implements (the runner, collect and the report log through it)."""

    def log_row(self, row: dict[str, Any]) -> None: ...
    def log_summary(self, values: dict[str, Any]) -> None: ...
    def log_table(self, name: str, table: pd.DataFrame) -> None: ...
    def log_image(self, name: str, path: Path) -> None: ...
    def finish(self) -> None: ...


class NullTracker:
    """Logs nothing (tracker=none)."""

    def log_row(self, row: dict[str, Any]) -> None:
        """Record one result row."""

    def log_summary(self, values: dict[str, Any]) -> None:
        """Record summary values."""

    def log_table(self, name: str, table: pd.DataFrame) -> None:
        """Record a table."""

    def log_image(self, name: str, path: Path) -> None:
        """Record an image file."""

    def finish(self) -> None:
        """Close the run."""


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value (trackers serialise plain values only)."""
    return value.item() if hasattr(value, "item") else value


def configuration_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The fields that identify one evaluated configuration (its stage options included)."""
    return {field: _plain(row.get(field)) for field in FIELDS}


def configuration_metrics(row: dict[str, Any]) -> dict[str, float]:
    """The row's metrics that have a value (a failed row has none)."""
    values = {name: _plain(row.get(name)) for name in METRICS}
    return {name: float(v) for name, v in values.items() if isinstance(v, int | float) and not math.isnan(v)}


def configuration_name(row: dict[str, Any]) -> str:
    """A readable run name: method, stages, task and seed."""
    return f"{row.get('method')} {config_text(row)} {row.get('task')} seed={row.get('seed')}"


def _wandb_safe(df: pd.DataFrame) -> pd.DataFrame:
    """W&B tables need plain str column names and scalar cells (lists become JSON-ish strings)."""
    out = df.copy()
    out.columns = ["_".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in out.columns]
    for col in out.columns:
        if out[col].map(lambda v: isinstance(v, (list, tuple, dict)) or hasattr(v, "tolist")).any():
            out[col] = out[col].map(lambda v: str(list(v)) if hasattr(v, "__iter__") and not isinstance(v, str) else v)
    return out


class BufferedTracker(ABC):
    """Keeps what is logged and writes it on ``finish``: one run per row, one run for the rest (if any)."""

    kind: str  # the tracker's name (tracker.name)

    def __init__(self, experiment: str, job_type: str, name: str | None) -> None:
        self.experiment = experiment
        self.job_type = job_type
        self.name = name or f"{experiment}-{job_type}"
        self.rows: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {}
        self.tables: dict[str, pd.DataFrame] = {}
        self.images: dict[str, Path] = {}

    def log_row(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def log_summary(self, values: dict[str, Any]) -> None:
        self.summary.update(values)

    def log_table(self, name: str, table: pd.DataFrame) -> None:
        self.tables[name] = table

    def log_image(self, name: str, path: Path) -> None:
        self.images[name] = Path(path)

    def finish(self) -> None:
        """Write what was logged; a tracker that cannot write (no login, bad URI) is a ConfigError."""
        rows, self.rows = self.rows, []
        has_step_run = bool(self.summary or self.tables or self.images)
        try:
            if rows or has_step_run:
                self._write(rows, has_step_run)
        except Exception as err:
            log.debug("tracker=%s failed", self.kind, exc_info=True)
            what = f"{len(rows)} configuration{'' if len(rows) == 1 else 's'}"
            if has_step_run:
                what += f" and the {self.job_type} run"
            raise ConfigError(f"tracker={self.kind} could not log {what}: {type(err).__name__}: {err}; the results "
                              "themselves are saved (Parquet); check the tracker.* settings") from err
        finally:
            self.summary, self.tables, self.images = {}, {}, {}

    @abstractmethod
    def _write(self, rows: list[dict[str, Any]], step_run: bool) -> None:
        """Write one configuration run per row, and the step's run (summary, tables, images) when ``step_run``."""


class WandbTracker(BufferedTracker):
    """W&B: one run per configuration (job_type ``configuration``) and one per collect/report step, grouped by
    experiment. Runs are created in parallel threads with the lean settings below (no system metrics, code or
    console capture): about 0.05 s a configuration offline."""

    kind = "wandb"

    def __init__(self, cfg: DictConfig, job_type: str, name: str | None = None) -> None:
        import wandb

        super().__init__(str(cfg.experiment_name), job_type, name)
        node = cfg.tracker
        self._wandb = wandb
        out = Path(cfg.paths.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        self._init = {
            "project": node.get("project", "imprint_bench"),
            "entity": node.get("entity") or None,
            "group": self.experiment,
            "dir": str(out),
            "mode": node.get("mode") or os.environ.get("WANDB_MODE") or "online",
            "reinit": "create_new",
            "settings": wandb.Settings(x_disable_stats=True, x_disable_meta=True, x_disable_machine_info=True,
                                       save_code=False, disable_git=True, console="off", x_save_requirements=False,
                                       disable_job_creation=True),
        }

    def _write(self, rows: list[dict[str, Any]], step_run: bool) -> None:
        self._wandb.setup()
        if rows:
            with ThreadPoolExecutor(max_workers=WANDB_THREADS) as pool:
                list(pool.map(self._write_configuration, rows))
        if step_run:
            self._write_step_run()

    def _write_configuration(self, row: dict[str, Any]) -> None:
        run = self._wandb.init(**self._init, job_type=CONFIGURATION, name=configuration_name(row),
                               config=configuration_fields(row))
        run.summary.update({**configuration_metrics(row), **({"error": row["error"]} if row.get("error") else {})})
        run.finish()

    def _write_step_run(self) -> None:
        run = self._wandb.init(**self._init, job_type=self.job_type, name=self.name,
                               config={"experiment": self.experiment})
        try:
            run.summary.update({k: _plain(v) for k, v in self.summary.items()})
            for name, table in self.tables.items():
                run.log({name: self._wandb.Table(dataframe=_wandb_safe(table))})
            for name, path in self.images.items():
                run.log({name: self._wandb.Image(str(path))})
        finally:
            run.finish()


def mlflow_key(name: str) -> str:
    """A metric name MLflow accepts (letters, digits, ``_-. /:``); other characters become ``_``."""
    return re.sub(r"[^\w\-. /:]", "_", name)


class MlflowTracker(BufferedTracker):
    """MLflow: under the MLflow experiment ``tracker.experiment``, one parent run per imprint_bench experiment (found
    or created by name), and nested under it one run per configuration (params = fields, metrics = metrics) and one
    per collect/report step (summary as metrics, tables and figures as artifacts). Writers take a file lock, so the
    jobs of a sweep share one parent and one SQLite store."""

    kind = "mlflow"

    def __init__(self, cfg: DictConfig, job_type: str, name: str | None = None) -> None:
        super().__init__(str(cfg.experiment_name), job_type, name)
        node = cfg.tracker
        self._uri = str(node.tracking_uri)
        self._artifact_location = str(node.artifact_location)
        self._mlflow_experiment = str(node.experiment)
        self._lock = Path(cfg.paths.output_dir) / "mlflow.lock"
        folders = [self._lock.parent, Path(self._artifact_location)]
        if self._uri.startswith("sqlite:///"):
            folders.append(Path(self._uri.removeprefix("sqlite:///")).parent)
        for folder in folders:  # checked before any work: the store is written only when the job ends
            check_writable_folder(folder, f"tracker=mlflow cannot write into {folder}", "set tracker.tracking_uri "
                                  "and tracker.artifact_location (or paths.output_dir) to a folder you can write")

    def _write(self, rows: list[dict[str, Any]], step_run: bool) -> None:
        from filelock import FileLock
        from mlflow.tracking import MlflowClient

        for noisy in ("mlflow", "alembic"):  # store creation logs its migrations at INFO
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self._lock.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self._lock)):
            client = MlflowClient(self._uri)
            experiment_id = self._experiment_id(client)
            parent = self._parent_run_id(client, experiment_id)
            for row in rows:
                self._write_configuration(client, experiment_id, parent, row)
            if step_run:
                self._write_step_run(client, experiment_id, parent)

    def _experiment_id(self, client: Any) -> str:
        found = client.get_experiment_by_name(self._mlflow_experiment)
        if found is not None:
            return found.experiment_id
        Path(self._artifact_location).mkdir(parents=True, exist_ok=True)
        return client.create_experiment(self._mlflow_experiment,
                                        artifact_location=Path(self._artifact_location).resolve().as_uri())

    def _parent_run_id(self, client: Any, experiment_id: str) -> str:
        """The imprint_bench experiment's parent run (created on first use)."""
        token = None
        while True:
            page = client.search_runs([experiment_id], "tags.imprint_bench_role = 'experiment'", page_token=token)
            for run in page:
                if run.info.run_name == self.experiment:
                    return run.info.run_id
            token = page.token
            if not token:
                break
        run = client.create_run(experiment_id, run_name=self.experiment,
                                tags={"imprint_bench_role": "experiment", "experiment": self.experiment})
        client.set_terminated(run.info.run_id)
        return run.info.run_id

    def _child_run(self, client: Any, experiment_id: str, parent: str, name: str, role: str) -> str:
        tags = {"mlflow.parentRunId": parent, "imprint_bench_role": role, "experiment": self.experiment}
        return client.create_run(experiment_id, run_name=name, tags=tags).info.run_id

    def _write_configuration(self, client: Any, experiment_id: str, parent: str, row: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        run_id = self._child_run(client, experiment_id, parent, configuration_name(row), CONFIGURATION)
        stamp = _now_ms()
        client.log_batch(run_id,
                         metrics=[Metric(k, v, stamp, 0) for k, v in configuration_metrics(row).items()],
                         params=[Param(k, str(v)) for k, v in configuration_fields(row).items()],
                         tags=[RunTag("error", str(row["error"])[:5000])] if row.get("error") else [])
        client.set_terminated(run_id, "FINISHED" if row.get("status") == "ok" else "FAILED")

    def _write_step_run(self, client: Any, experiment_id: str, parent: str) -> None:
        from mlflow.entities import Metric, RunTag

        run_id = self._child_run(client, experiment_id, parent, self.name, self.job_type)
        stamp = _now_ms()
        values = {k: _plain(v) for k, v in self.summary.items()}
        metrics = [Metric(mlflow_key(k), float(v), stamp, 0) for k, v in values.items()
                   if isinstance(v, int | float) and not isinstance(v, bool)]
        tags = [RunTag(mlflow_key(k), str(v)[:5000]) for k, v in values.items()
                if not isinstance(v, int | float) or isinstance(v, bool)]
        for start in range(0, max(len(metrics), len(tags)), 1000):  # MLflow takes at most 1000 per batch
            client.log_batch(run_id, metrics=metrics[start:start + 1000], tags=tags[start:start + 1000])
        for name, table in self.tables.items():
            client.log_text(run_id, table.to_csv(index=False), f"{name}.csv")
        for name, path in self.images.items():
            folder = str(PurePosixPath(name).parent)
            client.log_artifact(run_id, str(path), artifact_path=None if folder == "." else folder)
        client.set_terminated(run_id)


def _now_ms() -> int:
    return int(time.time() * 1000)


def make_tracker(cfg: DictConfig, job_type: str, name: str | None = None) -> Tracker:
    """The tracker named by ``cfg.tracker.name``."""
    kind = cfg.tracker.name
    check_choice("tracker", kind, TRACKERS)
    if kind == "wandb":
        return WandbTracker(cfg, job_type, name)
    if kind == "mlflow":
        return MlflowTracker(cfg, job_type, name)
    return NullTracker()
