"""Report section on the class-incremental protocol (``task=incremental``): accuracy against the step per method,
joint imprinting beside it, the average incremental accuracy, the forgetting, and which methods are exactly
incremental."""

from __future__ import annotations

import pandas as pd

from imprint_bench.report import tables
from imprint_bench.report.context import ReportContext, plots
from imprint_bench.report.render import format_table


def write_incremental(ctx: ReportContext, rows: pd.DataFrame) -> None:
    """The curves figure and the summary table of the class-incremental rows (``step`` >= 0)."""
    doc = ctx.doc
    doc.heading("Class-incremental imprinting")
    curves = tables.incremental_curves(rows)
    if curves.empty:
        doc.note("No successful class-incremental rows: section skipped.")
        return
    summary = tables.incremental_table(curves)
    ctx.csv("incremental_curves", curves)
    ctx.csv("incremental", summary)
    doc.para(
        "Each method imprints the first group of classes, then grows its head group by group from that group's "
        "training rows only (`task=incremental`, `task.steps`); after each step it is tested on all classes seen "
        "so far. *Joint* imprints the same seen classes at once. *Forgetting*: accuracy on the first group's "
        "classes after the first step minus after the last. *Exactly incremental*: the accuracy equals joint "
        "imprinting's at every step of every cell."
    )
    ctx.figure("incremental", plots().plot_incremental(curves),
               "Accuracy on the seen classes against the number of classes seen (mean over cells); dashed: joint "
               "imprinting of the same classes.")
    doc.table(format_table(
        summary.assign(exactly_incremental=summary["exactly_incremental"].map({True: "yes", False: "no"})),
        digits={"avg_incremental_acc": 2, "final_acc": 2, "joint_final_acc": 2, "forgetting": 2, "steps": 0,
                "cells": 0},
        rename={"avg_incremental_acc": "avg incremental acc %", "final_acc": "final acc %",
                "joint_final_acc": "joint final acc %", "forgetting": "forgetting (points)",
                "exactly_incremental": "exactly incremental"}))
    ctx.summary["incremental/exact_methods"] = ", ".join(
        summary.loc[summary["exactly_incremental"], "method"].drop_duplicates()) or "none"
