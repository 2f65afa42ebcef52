"""Report section on model selection: configurations chosen on validation accuracy, judged on the test set."""

from __future__ import annotations

import numpy as np

from imprint_bench.report import selection, tables
from imprint_bench.report.context import ReportContext
from imprint_bench.report.data import GROUP_COLS, full_data_slice, gen_name
from imprint_bench.report.render import format_table
from imprint_bench.report.sections.methods import cd_block

SHOWN_GROUPS = 10  # groups with the largest optimism gap shown in the document (the CSV has all)
RENAME = {
    "val_selected": "chosen on validation",
    "val_acc": "val acc %",
    "test_acc": "test acc %",
    "test_selected": "test-selected (optimistic)",
    "test_selected_acc": "test-selected acc %",
    "optimism_gap": "optimism gap",
}


def write_model_selection(ctx: ReportContext) -> None:
    """The protocol, the choice per group and per backbone with its optimism gap, and GEN methods compared after
    each is tuned on validation data (Friedman, Wilcoxon–Holm, CD diagram). Without validation data: one line."""
    doc = ctx.doc
    doc.heading("Model selection on validation data")
    for note in selection.coverage_notes(ctx.validation):
        doc.note(note)
    if not ctx.validation.available:
        return
    rows, shots = full_data_slice(selection.validated_rows(ctx.ok))
    med = tables.seed_medians(rows)
    n_val = rows["n_val"].to_numpy(float)
    size = f", median {np.median(n_val):.0f} rows per run" if np.nanmax(n_val) > 0 else ""
    doc.para(
        "Protocol: every run held out a stratified, seeded validation split of its task's training rows "
        f"(`task.val_fraction` / `task.val_per_class`{size}); GEN imprinted from the rest. A configuration "
        "(k, m, NORM, AGG, λ, …) is chosen on the validation accuracy alone (median over seeds) and judged by "
        "its test accuracy. The test-selected optimum, which the paper and its reference code report, is shown "
        "beside it for comparison only; *optimism gap* = its test accuracy − the test accuracy of the "
        f"validation choice (≥ 0). Slice: {'all training data' if shots == -1 else f'{shots} samples per class'}, "
        f"{med['label'].nunique()} configurations, {med[GROUP_COLS].drop_duplicates().shape[0]} groups."
    )
    per_group = selection.selection_table(med, GROUP_COLS)
    ctx.csv("selection_per_group", per_group)
    gaps = selection.gap_summary(per_group)
    doc.para(
        f"Chosen per group: the optimism gap averages {gaps['mean_gap']:.2f} points (largest {gaps['max_gap']:.2f}); "
        f"validation and test pick the same configuration in {gaps['agree']:.0%} of the {gaps['n']} groups."
    )
    largest = per_group.sort_values("optimism_gap", ascending=False, kind="stable").head(SHOWN_GROUPS)
    doc.table(format_table(largest, rename=RENAME),
              caption=f"Groups with the largest optimism gap (up to {SHOWN_GROUPS}; tables/selection_per_group.csv "
                      "has all)")
    per_backbone = selection.selection_table(med, ["backbone"])
    ctx.csv("selection_per_backbone", per_backbone)
    doc.table(format_table(per_backbone, rename=RENAME),
              caption="One configuration per backbone, chosen on the mean validation accuracy over its groups "
                      "(among the configurations covering the most groups); accuracies are means over those groups")
    ctx.summary["report/selection/mean_gap"] = gaps["mean_gap"]
    ctx.summary["report/selection/max_gap"] = gaps["max_gap"]
    tuned = selection.tuned_matrix(med, "gen").rename(columns=gen_name)
    if tuned.shape[1] >= 2:
        doc.para(
            "GEN methods compared after tuning: in each group every GEN method keeps its configuration chosen on "
            "validation accuracy; the rank statistics below use those configurations' test accuracies."
        )
        cd_block(ctx, tuned, "selected_gen", "GEN methods, each tuned on validation data")
