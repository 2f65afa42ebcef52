"""Report sections with accuracy curves: k sweep, few-shot and the ImageNet "d in 1" tasks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from imprint_bench.imprint.registry import k_text
from imprint_bench.report import selection, tables
from imprint_bench.report.context import ReportContext, limit_panels, plots
from imprint_bench.report.data import gen_name
from imprint_bench.report.render import format_table


def write_k_sweep(ctx: ReportContext) -> None:
    """Accuracy vs number of proxies k per backbone and dataset (figure and table; with validation data the k
    chosen on it)."""
    doc = ctx.doc
    doc.heading("Accuracy vs number of proxies k")
    data, info = tables.k_sweep_data(ctx.ok)
    if data.empty:
        doc.note("No GEN method was run with two or more values of k (AGG max): k-sweep figure skipped.")
        return
    ctx.csv("k_sweep", data)
    fig = plots().plot_k_sweep(limit_panels(ctx, data), tuple(info["norms"]), show_paper=ctx.paper != "no")
    has_auto = bool((data["k"] == 0).any())
    ctx.figure(
        "k_sweep",
        fig,
        "Accuracy vs k per backbone and dataset (paper Fig. 6 / 11b): lines per GEN "
        "method, `all` dashed, `mean` a star at k = 1; mean over the panel's groups of seed medians."
        + (" k = auto (chosen per class) is a dotted line, not a point on the k axis." if has_auto else ""),
    )
    wide = data.pivot_table(index=["backbone", "dataset", "gen"], columns="k", values="acc").reset_index()
    wide.columns = [("all" if c == -1 else f"k={k_text(c)}") if isinstance(c, (int, np.integer)) else c
                    for c in wide.columns]
    last = [c for c in ("k=auto", "all") if c in wide.columns]  # auto, then every sample as a proxy: at the end
    wide = wide[[c for c in wide.columns if c not in last] + last]
    doc.table(format_table(wide), caption="Accuracy (%) by k (k = -1 / all: every training sample is a proxy"
              + ("; k=auto: k chosen per class by gen.k=auto)" if has_auto else ")"))
    if ctx.validation.available:
        _best_k(ctx)


def _best_k(ctx: ReportContext) -> None:
    """Per panel and GEN method with two or more k: the k chosen on validation accuracy, its test accuracy, the
    test-selected k and the optimism gap (on the rows with validation data)."""
    data, _ = tables.k_sweep_data(selection.validated_rows(ctx.ok))
    if data.empty:
        return
    keys = ["backbone", "dataset", "gen"]
    swept = data.groupby(keys)["k"].transform("nunique") >= 2
    data = data[swept]
    on_val = selection.choose_best(data[[*keys, "k", "val_acc"]], keys, candidate="k")
    on_val = on_val.merge(data[[*keys, "k", "acc"]], on=[*keys, "k"], how="left")
    on_test = selection.choose_best(data[[*keys, "k", "acc"]], keys, candidate="k")
    both = on_val.merge(on_test, on=keys, suffixes=("", "_test"))
    tab = pd.DataFrame(
        {
            "backbone": both["backbone"],
            "dataset": both["dataset"],
            "GEN": both["gen"].map(gen_name),
            "k (validation)": both["k"].map(k_text),
            "test acc": both["acc"],
            "k (test-selected)": both["k_test"].map(k_text),
            "test acc (test-selected)": both["acc_test"],
        }
    )
    tab["optimism gap"] = tab["test acc (test-selected)"] - tab["test acc"]
    ctx.csv("k_sweep_selection", tab)
    ctx.doc.table(format_table(tab), caption="k chosen on validation accuracy and its test accuracy (%), beside the "
                  "k chosen on the test accuracy itself (optimistic); gap = test-selected − validation-selected")


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
            digits={"val_best_k": 0},
            rename={
                "acc_k1": "acc k=1",
                "acc_kd": "acc k=d",
                "acc_kd1": "acc k=d+1",
                "best_k": "best k (test-selected)",
                "best_acc": "best acc (test-selected, optimistic)",
                "val_best_k": "k (validation)",
                "val_best_acc": "test acc at k (validation)",
                "optimism_gap": "optimism gap",
                "n_variants": "variants",
                "paper_acc_k1": "paper k=1",
                "paper_acc_kd": "paper k=d",
            },
        )
    )
