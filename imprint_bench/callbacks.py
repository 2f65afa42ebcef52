"""Hydra callbacks: check the output folder before a run or sweep starts; collect and summarise a sweep when it ends
(the ``imprint`` sweeper plans it before it starts).

Hydra turns an exception in a callback into a warning and exits 0; a failed collect must fail the command, so it
ends in ``SystemExit`` (which Hydra lets through) after a one-line reason.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from imprint_bench.errors import ConfigError

log = logging.getLogger("imprint_bench")


class CheckOutputFolder(Callback):
    """Before Hydra creates a run's (or a sweep's) output folder: an unwritable place (a read-only
    ``IMPRINT_BENCH_ROOT``, a file in the way) is one line and exit code 2 instead of Hydra's traceback."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_folder(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_folder(config.hydra.sweep.dir)


def _check_folder(folder: str) -> None:
    from imprint_bench.errors import check_writable_folder

    try:
        check_writable_folder(Path(folder), f"cannot write the log folder {folder}",
                              "set paths.root (or $IMPRINT_BENCH_ROOT, or paths.log_dir) to a folder you can write",
                              create=False)  # Hydra creates it (mode=plan and a refused sweep create nothing)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


class CollectOnMultirunEnd(Callback):
    """After a multirun: merge the experiment's part files into results.parquet and print a summary."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if config.get("mode") != "run":
            return
        try:
            collect_sweep(config)
        except Exception as err:
            log.debug("collecting the sweep failed", exc_info=True)
            reason = str(err) if isinstance(err, ConfigError) else f"{type(err).__name__}: {err}"
            print(f"error: collecting the sweep failed: {reason}", file=sys.stderr)
            raise SystemExit(2 if isinstance(err, ConfigError) else 1) from None


def collect_sweep(config: DictConfig) -> None:
    """Report the jobs' summaries, merge the part files, print Table 1 and log the collect run to the tracker."""
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
        from imprint_bench.report.builder import log_collected
        from imprint_bench.report.data import separate_feature_sets, split_incremental
        from imprint_bench.report.selection import describe_search_choice
        from imprint_bench.report.tables import format_table1, incremental_curves, incremental_table

        table, notes = separate_feature_sets(result.table)
        for note in notes:
            print(f"note: {note}")
        table, incremental = split_incremental(table)
        if len(table):
            print(format_table1(table))
        if len(incremental):
            summary = incremental_table(incremental_curves(incremental))
            print("Class-incremental (mean over cells; forgetting = first group's accuracy, first step minus last):")
            print(summary.round(2).to_string(index=False))
        if config.get("optimized_metric"):
            print(describe_search_choice(result.table, str(config.optimized_metric)))
        log_collected(config, result.table, root / "report")
