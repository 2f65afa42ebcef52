"""Report sections with accuracy curves: k sweep, few-shot and the ImageNet "d in 1" tasks."""

from __future__ import annotations

import numpy as np

from imprint_bench.report import tables
from imprint_bench.report.context import ReportContext, limit_panels, plots
from imprint_bench.report.render import format_table


def write_k_sweep(ctx: ReportContext) -> None:
    """Accuracy vs number of proxies k per backbone and dataset (figure and table)."""
    doc = ctx.doc
    doc.heading("Accuracy vs number of proxies k")
    data, info = tables.k_sweep_data(ctx.ok)
    if data.empty:
        doc.note("No GEN method was run with two or more values of k (AGG max): k-sweep figure skipped.")
        return
    ctx.csv("k_sweep", data)
    fig = plots().plot_k_sweep(limit_panels(ctx, data), tuple(info["norms"]), show_paper=ctx.paper != "no")
    ctx.figure(
        "k_sweep",
        fig,
        "Accuracy vs k per backbone and dataset (paper Fig. 6 / 11b): lines per GEN "
        "method, `all` dashed, `mean` a star at k = 1; mean over the panel's groups of seed medians.",
    )
    wide = data.pivot_table(index=["backbone", "dataset", "gen"], columns="k", values="acc").reset_index()
    wide.columns = [f"k={c}" if isinstance(c, (int, np.integer)) else c for c in wide.columns]
    wide = wide.rename(columns={"k=-1": "all"})
    if "all" in wide.columns:  # every sample as a proxy: the last column
        wide = wide[[c for c in wide.columns if c != "all"] + ["all"]]
    doc.table(format_table(wide), caption="Accuracy (%) by k (k = -1 / all: every training sample is a proxy)")


def write_few_shot(ctx: ReportContext) -> None:
    """Accuracy vs training samples per class (figure and table)."""
    doc = ctx.doc
    doc.heading("Few-shot: accuracy vs samples per class")
    data, info = tables.few_shot_data(ctx.ok)
    if data.empty:
        doc.note(
            "The results hold fewer than two few-shot values (shots) for mean / k-means / all with AGG max: "
            "few-shot figure skipped."
        )
        return
    ctx.csv("few_shot", data)
    fig = plots().plot_few_shot(limit_panels(ctx, data), tuple(info["norms"]))
    ctx.figure(
        "few_shot",
        fig,
        "Accuracy vs training samples per class (paper Fig. 10): median over seeds, band "
        "±1.96·std/√n; k-means with k ≥ n equals `all` and joins the k = n line.",
    )
    fs = data[data["shots"] > 0]
    wide = fs.pivot_table(index=["backbone", "dataset", "line"], columns="shots", values="acc").reset_index()
    wide.columns = [f"n={c}" if isinstance(c, (int, np.integer)) else c for c in wide.columns]
    doc.table(format_table(wide), caption="Median accuracy (%) by samples per class n")


def write_d_in_1(ctx: ReportContext) -> None:
    """ImageNet "d in 1" mappings: accuracy vs k per d (figure and table)."""
    doc = ctx.doc
    doc.heading('ImageNet "d in 1" tasks')
    data, info = tables.d_in_1_data(ctx.ok)
    if data.empty:
        doc.note('No "d in 1" label mappings (map{d}-{v}) with two or more k values: figure skipped.')
        return
    ctx.csv("d_in_1_curves", data)
    fig = plots().plot_d_in_1(limit_panels(ctx, data), tuple(info["norms"]))
    ctx.figure(
        "d_in_1",
        fig,
        "Accuracy vs k for labels that merge d ImageNet classes (paper Fig. 11b): mean over "
        "variants of seed medians, band ±1.96·std/√n; ★ marks k = d, where the paper finds a peak.",
    )
    show = ctx.paper != "no"
    tab = tables.d_in_1_table(data, show)
    if show and "paper_acc_k1" in tab and tab["paper_acc_k1"].isna().all():
        tab = tab.drop(columns=["paper_acc_k1", "paper_acc_kd"])
    ctx.csv("d_in_1", tab)
    doc.table(
        format_table(
            tab,
            rename={
                "acc_k1": "acc k=1",
                "acc_kd": "acc k=d",
                "acc_kd1": "acc k=d+1",
                "best_k": "best k",
                "best_acc": "best acc",
                "n_variants": "variants",
                "paper_acc_k1": "paper k=1",
                "paper_acc_kd": "paper k=d",
            },
        )
    )
