"""Hydra callbacks: print a sweep's plan before it starts, collect and summarise it when it ends."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from imprint_bench.errors import ConfigError
from imprint_bench.grid import GridPlan
from imprint_bench.runner import Cell

log = logging.getLogger("imprint_bench")


def sweep_job_overrides(config: DictConfig) -> list[list[str]]:
    """The override list of every job the basic sweeper will launch for this multirun."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    args = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    overrides = OverridesParser.create().parse_overrides(args)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def plan_sweep(config: DictConfig) -> list[tuple[Cell, GridPlan, int]]:
    """Compose every job's config and plan it (no data is loaded): bad values fail here, before any job runs.
    Returns each job's cell, grid plan and number of runs (pruned by the task's class count when known)."""
    from hydra import compose

    from imprint_bench.grid import prune_for_task
    from imprint_bench.runner import plan_job

    planned = []
    for overrides in sweep_job_overrides(config):
        try:
            cell, plan = plan_job(compose(config.hydra.job.config_name, overrides=overrides))
        except ConfigError as err:
            raise ConfigError(f"job {' '.join(overrides)}: {err}") from err
        specs = prune_for_task(plan.specs, len(cell.classes))[0] if cell.classes is not None else plan.specs
        planned.append((cell, plan, len(specs)))
    return planned


def print_sweep_plan(planned: list[tuple[Cell, GridPlan, int]]) -> None:
    for cell, _, n_runs in planned:
        print(f"  {cell.describe()}: {n_runs} runs")
    pruned = sum(sum(plan.pruned.values()) for _, plan, _ in planned)
    dupes = sum(plan.n_duplicates for _, plan, _ in planned)
    print(f"plan: {len(planned)} jobs, {sum(n for *_, n in planned)} runs ({pruned} invalid combinations pruned, "
          f"{dupes} duplicates merged; mNN runs with m above a task's proxy count are pruned at run time)")


class CollectOnMultirunEnd(Callback):
    """After a multirun: merge the experiment's part files into results.parquet and print a summary."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.get("mode") in ("run", "plan"):
            try:
                planned = plan_sweep(config)
            except ConfigError as err:  # Hydra turns callback exceptions into warnings; stop the sweep instead
                print(f"error: {err}", file=sys.stderr)
                raise SystemExit(2) from err
            if config.get("mode") == "plan":
                print_sweep_plan(planned)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if config.get("mode") != "run":
            return
        from imprint_bench.results import collect

        summaries = [json.loads(p.read_text()) for p in Path(config.hydra.sweep.dir).glob("**/job_summary.json")]
        ok = sum(s["ok"] for s in summaries)
        failed = sum(s["failed"] for s in summaries)
        skipped = sum(s["skipped"] for s in summaries)
        print(f"sweep finished: {len(summaries)} jobs reported, {ok} runs done, {skipped} skipped, {failed} failed")
        for s in summaries:
            for failure in s["failures"][:5]:
                print(f"  failed in [{s['cell']}]: {failure}")
        root = Path(config.paths.results_dir) / str(config.experiment_name)
        result = collect(root)
        print(result.describe())
        if len(result.table):
            from imprint_bench.report.tables import format_table1
            from imprint_bench.tracking import log_collected

            print(format_table1(result.table))
            log_collected(config, result.table, root / "report")
