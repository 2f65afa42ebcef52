"""Report sections about the data itself: what the results hold, the runs and failures, versions, notes."""

from __future__ import annotations

import datetime as _dt
import json

import numpy as np
import pandas as pd

from imprint_bench.report import tables
from imprint_bench.report.context import ReportContext
from imprint_bench.report.data import GROUP_COLS, is_d_in_1
from imprint_bench.report.render import format_table


def write_intro(ctx: ReportContext, source: str) -> None:
    """What the results hold: rows, backbones, datasets, tasks, seeds, configurations."""
    df, ok = ctx.df, ctx.ok
    n_fail = int((df["status"] != "ok").sum())
    where = "an in-memory table" if source == "<DataFrame>" else f"`{source}`"
    ctx.doc.para(
        f"Results: {where} — {len(df)} rows ({len(ok)} ok, {n_fail} failed), generated "
        f"{_dt.datetime.now().isoformat(timespec='seconds')}."
    )
    ctx.doc.bullets(
        [
            f"Backbones: {_list(ok['backbone'])}",
            f"Datasets: {_list(ok['dataset'])}; tasks: {_list(ok['task'])}",
            f"Label mappings: {_mapping_summary(ok['mapping'])}",
            f"Seeds: {_list(ok['seed'])}; shots: {_list(ok['shots'].map(lambda s: 'all' if s == -1 else s))}",
            f"Configurations: {ok['label'].nunique()} (presets: {_list(ok.loc[ok['method'] != 'custom', 'method'])})",
            *_excluded_test_rows(ok),
        ]
    )
    ctx.doc.para(
        "*Average accuracy* follows the paper: the median over seeds within each group (backbone × "
        "dataset × mapping × task), then the mean over groups; std uses ddof = 1 and "
        "stderr = std/√(number of groups)."
    )
    ctx.summary.update({"report/n_rows": len(df), "report/n_ok": len(ok), "report/n_failed": n_fail})


def _excluded_test_rows(ok: pd.DataFrame) -> list[str]:
    """A bullet when test rows were left out (classes without training rows, ``task.unseen_test=exclude``)."""
    if "n_test_excluded" not in ok or not (ok["n_test_excluded"].fillna(0) > 0).any():
        return []
    cells = ok[ok["n_test_excluded"].fillna(0) > 0].drop_duplicates("cell_hash")
    return [f"**Test rows excluded**: {int(cells['n_test_excluded'].sum())} test rows in {len(cells)} cells belong to "
            "classes without training rows and were left out (task.unseen_test=exclude); accuracies cover the "
            "training classes only"]


def write_runs(ctx: ReportContext) -> None:
    """Rows per experiment and status, failed rows, seed counts and package versions."""
    doc, df = ctx.doc, ctx.df
    doc.heading("Runs")
    counts = df.groupby(["experiment", "status"]).size().unstack(fill_value=0).reset_index()
    counts.columns.name = None
    counts["experiment"] = counts["experiment"].replace("", "(none)")
    doc.table(format_table(counts), caption="Rows per experiment and status")
    failed = df[df["status"] != "ok"]
    if len(failed):
        shown = failed.head(20)
        fl = pd.DataFrame(
            {
                "run": shown["run_hash"].str[:10],
                "method": shown["method"],
                "group": shown[GROUP_COLS].astype(str).agg(" / ".join, axis=1),
                "seed": shown["seed"],
                "error": shown["error"].map(lambda e: _truncate(e, 120)),
            }
        )
        ctx.csv("failures", failed[["run_hash", "method", *GROUP_COLS, "seed", "error"]])
        doc.table(format_table(fl), caption=f"Failed rows ({len(failed)})")
        if len(failed) > 20:
            doc.note(f"… and {len(failed) - 20} more failed rows (see tables/failures.csv).")
        top = failed["error"].map(lambda e: _truncate(e.splitlines()[0] if e else "(no message)", 80))
        doc.bullets([f"{n}× {msg}" for msg, n in top.value_counts().head(5).items()])
    else:
        doc.para("No failed rows.")
    sc = tables.seed_counts(ctx.ok)
    if len(sc):
        dist = sc["n_seeds"].value_counts().sort_index()
        if len(dist) == 1:
            doc.para(f"Every (group, configuration) has {int(dist.index[0])} seed(s).")
        else:
            doc.note(
                "WARNING: the number of seeds differs between (group, configuration) pairs: "
                + ", ".join(f"{int(n)} seed(s): {c} pairs" for n, c in dist.items())
                + " (tables/seed_counts.csv lists them)."
            )
            ctx.csv("seed_counts", sc[sc["n_seeds"] != dist.idxmax()])
        if int(dist.index.max()) == 1:
            doc.note("Single seed: medians over seeds are the values themselves.")
    ctx.summary["report/seeds_per_group_min"] = int(sc["n_seeds"].min()) if len(sc) else 0
    _versions(ctx)


def _versions(ctx: ReportContext) -> None:
    """Package versions recorded in the rows, flagged when mixed."""
    vals = ctx.df["versions"].replace("", np.nan).dropna().unique()
    parsed: dict[str, set[str]] = {}
    for v in vals[:1000]:
        try:
            for k, x in json.loads(v).items():
                parsed.setdefault(str(k), set()).add(str(x))
        except (ValueError, AttributeError, TypeError):
            continue
    if parsed:
        ctx.doc.bullets(
            [
                f"`{k}`: {', '.join(sorted(v))}" + (" (**mixed**)" if len(v) > 1 else "")
                for k, v in sorted(parsed.items())
            ]
        )


def write_notes(ctx: ReportContext) -> None:
    """Definitions of groups, ranks and tests used throughout the report."""
    ctx.doc.heading("Notes")
    ctx.doc.bullets(
        [
            "Groups / blocks / voters = backbone × dataset × mapping × task; a configuration = the stage "
            "columns "
            "(NORMpre, GEN, k, NORMpost, NORMinf, AGG, m, distance, weighting) plus shots.",
            "Ranks: within each block, 1 = highest median accuracy, ties share the mean rank; the CD diagram "
            "uses "
            "the blocks complete for all compared methods. Identical methods get p = 1, never 'significant'.",
            "Friedman (scipy) then pairwise Wilcoxon signed-rank (zero_method 'pratt') with Holm's step-down "
            f"correction at α = {ctx.alpha}; post-hoc results count only if the Friedman test rejects.",
            _selection_note(ctx),
        ]
    )


def _selection_note(ctx: ReportContext) -> str:
    """How the report's 'best' configurations were chosen."""
    if ctx.validation.available:
        return ("'Best' configurations (best custom rows, the AGG table, best k, the model-selection section) are "
                "chosen on validation accuracy (`val_acc`) and shown with their test accuracy; test-selected optima "
                "appear only beside them, labelled, with the optimism gap.")
    return ("'Best' configurations (best custom rows, the AGG table) are chosen on the test accuracies they "
            "report, as in the paper: treat them as optimistic.")


def _list(series: pd.Series, limit: int = 12) -> str:
    """Distinct values, sorted (numbers by value), the first ``limit`` of them."""
    vals = sorted({str(v) for v in series}, key=lambda s: (len(s), s) if s.isdigit() else (0, s))
    if not vals:
        return "–"
    return ", ".join(vals[:limit]) + (f", … ({len(vals)} in all)" if len(vals) > limit else "")


def _mapping_summary(series: pd.Series) -> str:
    """Label mappings, with the ImageNet d-in-1 ones counted rather than listed."""
    d1 = is_d_in_1(series)
    other = _list(series[~d1]) if (~d1).any() else ""
    parts = [other] if other else []
    if d1.any():
        parts.append(f"{series[d1].nunique()} ImageNet d-in-1 mappings")
    return "; ".join(parts) or "–"


def _truncate(text: str, n: int) -> str:
    """One line of at most ``n`` characters (an ellipsis marks a cut)."""
    text = str(text).replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"
