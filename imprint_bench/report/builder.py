"""The report as a whole: :func:`build_report` runs every section and writes the output folder."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from imprint_bench.errors import ConfigError
from imprint_bench.imprint.spec import PRESETS
from imprint_bench.report import selection, stats
from imprint_bench.report.context import ReportContext, run_section
from imprint_bench.report.data import (
    add_config_labels,
    load_results,
    ok_rows,
    resolve_results_path,
    separate_feature_sets,
    split_incremental,
    validate_results,
)
from imprint_bench.report.render import Doc
from imprint_bench.report.sections.collapse import write_neural_collapse
from imprint_bench.report.sections.curves import write_d_in_1, write_few_shot, write_k_sweep
from imprint_bench.report.sections.incremental import write_incremental
from imprint_bench.report.sections.methods import write_aggregation, write_breakdown, write_ranks, write_table1
from imprint_bench.report.sections.overview import write_intro, write_notes, write_runs
from imprint_bench.report.sections.selection import write_model_selection
from imprint_bench.tracking import Tracker, make_tracker

if TYPE_CHECKING:
    from omegaconf import DictConfig

log = logging.getLogger(__name__)
PAPER_CHOICES = ("auto", "yes", "no")


def build_report(
    results: pd.DataFrame | str | Path,
    out_dir: str | Path | None = None,
    *,
    methods: str | Sequence[str] | None = None,
    paper: str = "auto",
    best_custom: int | None = None,
    alpha: float = stats.ALPHA,
    tracker: Tracker | None = None,
    title: str | None = None,
    strict: bool = False,
) -> Path:
    """Write report.md, report.html, figures/*.png and tables/*.csv into ``out_dir``; return report.md's path.

    ``results``: the results table or the path of a results.parquet (or of a directory holding one).
    ``out_dir``: defaults to a ``report/`` folder next to the results file (required for a DataFrame).
    ``methods``: preset names for Table 1 and the CD diagram (comma string or list; None/"all" = every preset
    present, in the paper's order). ``paper``: auto | yes | no — show the paper's numbers beside ours (auto:
    only when the data is the paper's setting). ``best_custom``: add the N best non-preset configurations
    (default: 0, or 5 when fewer than two presets are present). ``tracker``: a
    :class:`~imprint_bench.tracking.Tracker` that receives the summary, tables and figures, or None.
    ``strict``: re-raise errors of a section instead of noting them in the report.
    """
    if isinstance(results, pd.DataFrame):
        df, source = validate_results(results), "<DataFrame>"
        if out_dir is None:
            raise ConfigError("build_report needs out_dir when results is a DataFrame")
    else:
        path = resolve_results_path(results)
        df, source = load_results(path), str(path)
        out_dir = out_dir if out_dir is not None else path.parent / "report"
    if paper not in PAPER_CHOICES:
        raise ConfigError(f"unknown paper option {paper!r}; valid choices: {', '.join(PAPER_CHOICES)}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha!r}")
    wanted = parse_methods(methods)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob("figures/*.png"), *out.glob("tables/*.csv")]:  # outputs of an earlier report
        stale.unlink()
    df, label_notes = separate_feature_sets(df)
    regular, incremental = split_incremental(df)
    ok = add_config_labels(ok_rows(regular))  # every section but the class-incremental one reads these
    ctx = ReportContext(out, Doc(title or "imprint_bench report"), df, ok, paper, alpha, strict,
                        validation=selection.coverage(ok))
    write_intro(ctx, source)
    if label_notes:
        ctx.doc.bullets([f"**Feature sets with the same labels**: {note}" for note in label_notes])
    t1_labels = run_section(ctx, "Table 1", lambda: write_table1(ctx, wanted, best_custom)) or []
    run_section(ctx, "Ranks", lambda: write_ranks(ctx, t1_labels))
    run_section(ctx, "Breakdown", lambda: write_breakdown(ctx, t1_labels))
    run_section(ctx, "Model selection", lambda: write_model_selection(ctx))
    run_section(ctx, "Aggregation", lambda: write_aggregation(ctx))
    run_section(ctx, "k sweep", lambda: write_k_sweep(ctx))
    run_section(ctx, "Few-shot", lambda: write_few_shot(ctx))
    run_section(ctx, "d in 1", lambda: write_d_in_1(ctx))
    run_section(ctx, "Neural collapse", lambda: write_neural_collapse(ctx))
    if len(incremental):
        run_section(ctx, "Class-incremental", lambda: write_incremental(ctx, incremental))
    run_section(ctx, "Runs", lambda: write_runs(ctx))
    write_notes(ctx)
    md = out / "report.md"
    md.write_text(ctx.doc.to_markdown(), encoding="utf-8")
    (out / "report.html").write_text(ctx.doc.to_html(), encoding="utf-8")
    if tracker is not None:
        _log_to_tracker(ctx, tracker, md)
    return md


def parse_methods(methods: str | Sequence[str] | None) -> list[str] | None:
    """None for "all presets"; else validated preset names (ConfigError names the unknown ones)."""
    if methods is None:
        return None
    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else [str(m).strip() for m in methods]
    names = [m for m in names if m]
    if not names or names == ["all"]:
        return None
    unknown = [m for m in names if m not in PRESETS]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; valid: {', '.join(PRESETS)} or 'all'")
    return list(dict.fromkeys(names))


def _log_to_tracker(ctx: ReportContext, tracker: Tracker, md: Path) -> None:
    """Send the summary, every CSV table and every figure to the tracker; tracker errors only warn."""
    summary = {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in ctx.summary.items()}
    summary["report/path"] = str(md)
    for what, call in (
        ("summary", lambda: tracker.log_summary(summary)),
        # tables and figures under distinct keys: W&B keeps one value per key (table1 is both)
        *((f"table {n}", (lambda n=n, d=d: tracker.log_table(f"report/tables/{n}", d)))
          for n, (_, d) in ctx.csvs.items()),
        *((f"image {n}", (lambda n=n, p=p: tracker.log_image(f"report/figures/{n}", p)))
          for n, p in ctx.figures.items()),
    ):
        try:
            call()
        except Exception as exc:
            if ctx.strict:
                raise
            log.warning("tracker failed to log %s: %s", what, exc)


def log_collected(cfg: DictConfig, table: pd.DataFrame, report_dir: Path) -> None:
    """With a tracker: one collect run holding the merged table, the report's summary, tables and figures."""
    if cfg.tracker.name == "none" or table.empty:
        return
    tracker = make_tracker(cfg, "collect")
    try:
        tracker.log_table("results", table)
        build_report(table, report_dir, tracker=tracker)
    finally:
        tracker.finish()
