"""Experiment trackers behind one small interface: ``none`` (default) and ``wandb`` (online or offline).

One W&B run per Hydra job (grouped by experiment), holding the job's config, a table of its rows
and summary metrics; the collect/report step logs one summary run. Parquet stays the source of truth.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from imprint_bench.errors import check_choice

TRACKERS = ("none", "wandb")


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


def _wandb_safe(df: pd.DataFrame) -> pd.DataFrame:
    """W&B tables need plain str column names and scalar cells (lists become JSON-ish strings)."""
    out = df.copy()
    out.columns = ["_".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in out.columns]
    for col in out.columns:
        if out[col].map(lambda v: isinstance(v, (list, tuple, dict)) or hasattr(v, "tolist")).any():
            out[col] = out[col].map(lambda v: str(list(v)) if hasattr(v, "__iter__") and not isinstance(v, str) else v)
    return out


class WandbTracker(NullTracker):
    """One wandb run; rows are buffered and logged as a ``wandb.Table`` on finish."""

    def __init__(self, cfg: DictConfig, job_type: str, name: str | None = None) -> None:
        import wandb

        node = cfg.tracker
        self._wandb = wandb
        self._rows: list[dict[str, Any]] = []
        self.run = wandb.init(
            project=node.get("project", "imprint_bench"),
            entity=node.get("entity") or None,
            group=str(cfg.experiment_name),
            job_type=job_type,
            name=name,
            dir=str(Path(cfg.paths.output_dir)),
            mode=node.get("mode") or os.environ.get("WANDB_MODE") or "online",
            # the job's own config: the hydra node of a sweep's config holds per-job interpolations (hydra.job.num)
            config=OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]),
                                          resolve=True, throw_on_missing=False),
            reinit="finish_previous",
        )

    def log_row(self, row: dict[str, Any]) -> None:
        self._rows.append(row)

    def log_summary(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self.run.summary[key] = value

    def log_table(self, name: str, table: pd.DataFrame) -> None:
        self.run.log({name: self._wandb.Table(dataframe=_wandb_safe(table))})

    def log_image(self, name: str, path: Path) -> None:
        self.run.log({name: self._wandb.Image(str(path))})

    def finish(self) -> None:
        if self._rows:
            rows = pd.DataFrame(self._rows)
            self.log_table("runs", rows)
            ok = rows[rows["status"] == "ok"]
            if len(ok):
                self.log_summary({"best_acc": float(ok["acc"].max()), "mean_acc": float(ok["acc"].mean())})
            self.log_summary({"n_ok": len(ok), "n_failed": int((rows["status"] != "ok").sum())})
        self.run.finish()


def make_tracker(cfg: DictConfig, job_type: str, name: str | None = None) -> Tracker:
    """The tracker named by ``cfg.tracker.name``."""
    kind = cfg.tracker.name
    check_choice("tracker", kind, TRACKERS)
    if kind == "wandb":
        return WandbTracker(cfg, job_type, name)
    return NullTracker()


def log_collected(cfg: DictConfig, table: pd.DataFrame, report_dir: Path) -> None:
    """With tracker=wandb: one summary run holding the merged table, the report's pivot tables and plots."""
    if cfg.tracker.name == "none" or table.empty:
        return
    from imprint_bench.report import build_report

    tracker = make_tracker(cfg, "collect", name=f"{cfg.experiment_name}-collect")
    try:
        tracker.log_table("results", table)
        build_report(table, report_dir, tracker=tracker)
    finally:
        tracker.finish()
