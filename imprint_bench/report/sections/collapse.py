"""Report section on neural collapse: NC1 per group and the multi-proxy gain vs NC1 (paper Fig. 12)."""

from __future__ import annotations

import pandas as pd

from imprint_bench.report import paper as paper_consts
from imprint_bench.report import stats, tables
from imprint_bench.report.context import ReportContext, plots
from imprint_bench.report.render import format_table


def write_neural_collapse(ctx: ReportContext) -> None:
    """NC1 per group, then the gain of k-means k=5 over k=1 against NC1 (figure and fit table)."""
    doc = ctx.doc
    doc.heading("Neural collapse (NC1)")
    show = ctx.paper != "no"
    tab = tables.nc1_table(ctx.df, show)
    if tab.empty:
        doc.note("No NC1 values in the results (columns nc1 / nc1_ref are empty): section skipped.")
        return
    if show and "paper_nc1_ref" in tab and tab["paper_nc1_ref"].isna().all():
        tab = tab.drop(columns=["paper_nc1_ref"])
    ctx.csv("nc1", tab)
    doc.para(
        "NC1 = Tr(Σ_W Σ_B⁺)/C of the task's L2-normalised training features (lower = more collapsed; the "
        'paper calls NC1 > 1 "not collapsed"). *ref. centring* reproduces the reference code, whose Σ_W '
        "gains μ_G μ_Gᵀ; the paper's NC1 values are of that kind. d-in-1 mappings are averaged per d."
    )
    doc.table(
        format_table(
            tab,
            digits={"nc1": 3, "nc1_ref": 3, "paper_nc1_ref": 3, "n_classes": 0},
            rename={
                "nc1": "NC1",
                "nc1_ref": "NC1 (ref. centring)",
                "n_classes": "classes",
                "n_mappings": "mappings",
                "paper_nc1_ref": "paper NC1 (ref.)",
            },
        )
    )
    pts = tables.nc_gain_data(ctx.ok)
    usable = [c for c in ("nc1", "nc1_ref") if len(pts) and (pts[c] > 0).sum() >= 3]
    if not usable:
        doc.note(
            "Fig. 12 (gain of k-means k=5 over k=1 vs NC1) needs k-means k=5 and k=1 (or mean) runs with AGG "
            "max on at least 3 groups with NC1: skipped."
        )
        return
    ctx.csv("nc1_gain_points", pts)
    gain = pts["gain"].to_numpy(float)
    fits = {c: stats.nc_gain_fit(pts[c].to_numpy(float), gain) for c in ("nc1", "nc1_ref") if (pts[c] > 0).any()}
    ctx.figure(
        "nc1_gain",
        plots().plot_nc_gain(pts, fits),
        "Accuracy gain of k-means k=5 over k=1 (mean over seeds) vs NC1, log x-axis "
        "(paper Fig. 12), with Spearman ρ and a linear fit on log10 NC1.",
    )
    fit_rows = [{"NC1": "textbook" if c == "nc1" else "ref. centring", **fits[c]} for c in fits]
    fit_df = pd.DataFrame(fit_rows)
    ctx.csv("nc1_gain_fit", fit_df)
    doc.table(
        format_table(
            fit_df,
            digits={"rho": 3, "r2": 3},
            pcols=("p",),
            rename={"rho": "Spearman ρ", "r2": "R² (log10 NC1)", "n": "points"},
        )
    )
    if show:
        doc.note(
            f"Paper (56 points, ref. centring): Spearman ρ = {paper_consts.FIG12_SPEARMAN_ALL}, "
            f"R² = {paper_consts.FIG12_R2_ALL}."
        )
    for c, f in fits.items():
        ctx.summary[f"report/nc1_gain/{c}/spearman"] = f["rho"]
