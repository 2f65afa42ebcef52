"""Hydra callback: collect and summarise a sweep when it ends (the ``imprint`` sweeper plans it before it starts)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("imprint_bench")


class CollectOnMultirunEnd(Callback):
    """After a multirun: merge the experiment's part files into results.parquet and print a summary."""

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
            from imprint_bench.report.data import separate_feature_sets
            from imprint_bench.report.tables import format_table1
            from imprint_bench.tracking import log_collected

            table, notes = separate_feature_sets(result.table)
            for note in notes:
                print(f"note: {note}")
            print(format_table1(table))
            log_collected(config, result.table, root / "report")
