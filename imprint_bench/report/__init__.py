"""The benchmark report: Table 1, rank statistics with a CD diagram, the paper's figures and NC1.

Python API: :func:`build_report` (used by the Hydra ``mode=report``); console: ``imprint-bench-report``
(:func:`report_main`). Output folder layout::

    report.md  report.html  figures/*.png  tables/*.csv
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from imprint_bench.errors import ConfigError
from imprint_bench.imprint.spec import PRESETS
from imprint_bench.report import paper as paper_consts
from imprint_bench.report import stats, tables
from imprint_bench.report.data import (
    GROUP_COLS,
    add_config_labels,
    agg_label,
    full_data_slice,
    gen_label,
    load_results,
    norm_label,
    ok_rows,
    resolve_results_path,
    separate_feature_sets,
    validate_results,
)
from imprint_bench.report.render import Doc, fmt_p, format_table

if TYPE_CHECKING:
    from imprint_bench.tracking import Tracker

__all__ = ["build_report", "load_results", "report_main"]

log = logging.getLogger(__name__)
PAPER_CHOICES = ("auto", "yes", "no")
MAX_PANELS = 24  # panels per figure; more make unreadable, slow figures


@dataclass
class _Ctx:
    """State shared by the report sections."""

    out: Path
    doc: Doc
    df: pd.DataFrame  # all rows, validated
    ok: pd.DataFrame  # successful rows with labels
    paper: str
    alpha: float
    strict: bool
    figures: dict[str, Path] = field(default_factory=dict)
    csvs: dict[str, tuple[Path, pd.DataFrame]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    table1_med: pd.DataFrame | None = None  # seed medians of the Table-1 methods
    table1_paper: bool = False  # Table 1 shows the paper's values

    def csv(self, name: str, df: pd.DataFrame) -> Path:
        path = self.out / "tables" / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(path, index=False)
        self.csvs[name] = (path, df)
        return path

    def figure(self, name: str, path: Path, caption: str) -> None:
        self.figures[name] = path
        self.doc.image(path, path.relative_to(self.out).as_posix(), caption)

    def fig_path(self, name: str) -> Path:
        return self.out / "figures" / f"{name}.png"


# ============================================================================================== public API
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
    (default: 0, or 5 when fewer than two presets are present). ``tracker``: object with log_summary / log_table /
    log_image, or None. ``strict``: re-raise errors of a section instead of noting them in the report.
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
    ctx = _Ctx(out, Doc(title or "imprint_bench report"), df, add_config_labels(ok_rows(df)), paper, alpha, strict)
    _intro(ctx, source)
    if label_notes:
        ctx.doc.bullets([f"**Feature sets with the same labels**: {note}" for note in label_notes])
    t1_labels = _run(ctx, "Table 1", lambda: _section_table1(ctx, wanted, best_custom)) or []
    _run(ctx, "Ranks", lambda: _section_cd(ctx, t1_labels))
    _run(ctx, "Breakdown", lambda: _section_breakdown(ctx, t1_labels))
    _run(ctx, "Aggregation", lambda: _section_agg(ctx))
    _run(ctx, "k sweep", lambda: _section_k_sweep(ctx))
    _run(ctx, "Few-shot", lambda: _section_few_shot(ctx))
    _run(ctx, "d in 1", lambda: _section_d_in_1(ctx))
    _run(ctx, "Neural collapse", lambda: _section_nc(ctx))
    _run(ctx, "Runs", lambda: _section_runs(ctx))
    _definitions(ctx)
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


def _plots():
    """The plotting module, imported on first use (the report stays light to import)."""
    from imprint_bench.report import plots

    return plots


def _run(ctx: _Ctx, name: str, fn: Callable[[], Any]) -> Any:
    """Run one section; on an unexpected error note it in the report (or re-raise when strict)."""
    try:
        return fn()
    except Exception as exc:
        if ctx.strict:
            raise
        log.exception("report section %s failed", name)
        ctx.doc.note(f"Section '{name}' could not be produced: {type(exc).__name__}: {exc}")
        return None


def _show_paper(ctx: _Ctx, matches: bool) -> bool:
    return ctx.paper == "yes" or (ctx.paper == "auto" and matches)


# ============================================================================================== sections
def _intro(ctx: _Ctx, source: str) -> None:
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


def _section_table1(ctx: _Ctx, wanted: list[str] | None, best_custom: int | None) -> list[str]:
    doc = ctx.doc
    doc.heading("Table 1: imprinting methods compared")
    sl, shots = full_data_slice(ctx.ok)
    if sl.empty:
        doc.note("No successful rows: Table 1 skipped.")
        return []
    med = tables.seed_medians(sl)
    labels, notes = tables.select_table1_labels(med, wanted, best_custom)
    for n in notes:
        doc.note(n)
    if not labels:
        doc.note("None of the requested methods has results: Table 1 skipped.")
        return []
    med1 = med[med["label"].isin(labels)]
    is_paper = tables.table1_is_paper_setting(med1)
    show = _show_paper(ctx, is_paper) and any(lab in paper_consts.TABLE1_ACC for lab in labels)
    t1 = tables.table1(med1, labels, show)
    ctx.csv("table1", t1)
    shots_txt = "all training data" if shots == -1 else f"{shots} samples per class"
    doc.para(
        f"Slice: {shots_txt}; {med1[GROUP_COLS].drop_duplicates().shape[0]} groups. `avg rank` ranks the "
        "methods of this table within each group (1 = best, ties averaged) over the groups all of them "
        "cover; `wins` counts groups where a method is (jointly) best."
    )
    cols = [
        "method",
        "NORMpre",
        "GEN",
        "NORMpost",
        "NORMinf",
        "AGG",
        "avg_acc",
        "std",
        "stderr",
        "n_groups",
        "avg_rank",
        "wins",
        "macro_f1",
        "gen_s",
    ] + (["paper_acc", "diff"] if show else [])
    doc.table(
        format_table(
            t1[cols],
            digits={"avg_rank": 2, "gen_s": 3},
            rename={
                "avg_acc": "avg acc %",
                "n_groups": "groups",
                "avg_rank": "avg rank",
                "macro_f1": "macro-F1 %",
                "gen_s": "GEN s (median)",
                "paper_acc": "paper %",
                "diff": "Δ vs paper",
            },
        )
    )
    if show:
        n = int(t1["n_groups"].max())
        scope = (
            "the same 48 groups"
            if n == paper_consts.TABLE1_N_GROUPS
            else (f"{n} of the paper's {paper_consts.TABLE1_N_GROUPS} groups, so the comparison is indicative only")
        )
        doc.note(f"Paper values: Table 1 of {paper_consts.CITATION}. This table covers {scope}.")
    uneven = t1["n_groups"].nunique() > 1
    if uneven:
        doc.note("Methods cover different numbers of groups; their averages are over different groups.")
    ctx.figure(
        "table1",
        _plots().plot_table1(t1, ctx.fig_path("table1")),
        "Average accuracy of the Table-1 methods (error bars: ±1.96·stderr over groups; diamonds: paper values).",
    )
    for row in t1.itertuples(index=False):
        ctx.summary[f"report/table1/{row.label}/avg_acc"] = row.avg_acc
        ctx.summary[f"report/table1/{row.label}/n_groups"] = row.n_groups
    ctx.table1_med, ctx.table1_paper = med1, show
    return labels


def _section_cd(ctx: _Ctx, labels: list[str]) -> None:
    doc = ctx.doc
    doc.heading("Average ranks and critical-difference diagram")
    med = ctx.table1_med
    if med is None or len(labels) < 2:
        doc.note("Fewer than 2 methods in Table 1: rank statistics skipped.")
        return
    mat = tables.block_matrix(med, labels)
    paper_ranks = paper_consts.TABLE1_CD_RANKS if ctx.table1_paper and set(labels) == set(PRESETS) else None
    _cd_block(ctx, mat, "table1", "Table-1 methods", paper_ranks)
    if paper_ranks:
        doc.note("Paper CD ranks are among all five methods with dense ties (spec §9.1); ours average ties.")


def _cd_block(
    ctx: _Ctx, mat: pd.DataFrame, name: str, what: str, paper_ranks: dict[str, float] | None = None
) -> stats.CDResult | None:
    """Friedman + Wilcoxon–Holm over a blocks × methods matrix: text, tables, CSVs and the diagram."""
    doc = ctx.doc
    complete = stats.complete_blocks(mat)
    if len(complete) < 2 or complete.shape[1] < 2:
        doc.note(f"{what}: fewer than 2 blocks with results for every method ({len(complete)}): no rank statistics.")
        return None
    cd = stats.cd_analysis(mat, ctx.alpha)
    fr = cd.friedman
    if np.isfinite(fr.pvalue):
        verdict = "significant" if fr.significant else "not significant"
        doc.para(
            f"Friedman test over {cd.n_blocks} blocks and {len(cd.methods)} methods: χ² = "
            f"{fr.statistic:.2f}, p = {fmt_p(fr.pvalue)} ({verdict} at α = {ctx.alpha}). Pairwise "
            "two-sided Wilcoxon signed-rank tests (Pratt zeros) with Holm correction"
            + ("." if fr.significant else " are shown for information only; no pair is called different.")
        )
    else:
        doc.para(
            f"{fr.note}; the single pair is tested with a two-sided Wilcoxon signed-rank test "
            f"(Pratt zeros) over {cd.n_blocks} blocks."
        )
    for n in cd.notes:
        doc.note(n)
    wins = stats.wins(stats.complete_blocks(mat))
    ranks = pd.DataFrame(
        {
            "method": cd.ranks.index,
            "avg_rank": cd.ranks.to_numpy(),
            "wins": [int(wins[m]) for m in cd.ranks.index],
            "avg_acc": [float(stats.complete_blocks(mat)[m].mean()) for m in cd.ranks.index],
        }
    )
    if paper_ranks:
        ranks["paper_rank"] = [paper_ranks.get(m, np.nan) for m in ranks["method"]]
    ctx.csv(f"ranks_{name}", ranks)
    doc.table(
        format_table(
            ranks,
            rename={"avg_rank": "avg rank", "avg_acc": "avg acc % (common blocks)", "paper_rank": "paper CD rank"},
        )
    )
    pairs = cd.pairs.assign(significant=cd.pairs["significant"] & cd.posthoc_valid)
    ctx.csv(f"pairs_{name}", pairs)
    shown = pairs.rename(
        columns={
            "method_a": "A",
            "method_b": "B",
            "mean_diff": "mean A−B",
            "a_wins": "A wins",
            "b_wins": "B wins",
            "p_raw": "p",
            "p_holm": "p (Holm)",
        }
    )
    doc.table(format_table(shown.drop(columns=["n_blocks"]), pcols=("p", "p (Holm)")))
    ctx.figure(
        f"cd_{name}",
        _plots().plot_cd(cd, ctx.fig_path(f"cd_{name}"), f"Critical-difference diagram: {what}"),
        f"Critical-difference diagram ({what}): average rank, bars join methods not significantly different.",
    )
    ctx.summary[f"report/{name}/friedman_p"] = fr.pvalue
    return cd


def _section_breakdown(ctx: _Ctx, labels: list[str]) -> None:
    doc = ctx.doc
    med = ctx.table1_med
    doc.heading("Where multi-proxy imprinting helps")
    if med is None or not labels:
        doc.note("No Table-1 methods: breakdown skipped.")
        return
    for by in ("backbone", "dataset", "task"):
        if med[by].nunique() > 1 or by == "backbone":
            bd = tables.breakdown(med, labels, by)
            ctx.csv(f"by_{by}", bd)
            doc.table(format_table(bd), caption=f"Average accuracy (%) per {by}")
    if {"ours", "qi"} <= set(labels):
        gaps = tables.gap_table(med, "ours", "qi", n=10)
        if len(gaps):
            ctx.csv("gaps_ours_vs_qi", gaps)
            doc.table(
                format_table(gaps.rename(columns={"gap": "ours − qi"})),
                caption="Groups with the largest gain of `ours` (k-means, k=20) over `qi` (mean)",
            )
            worst = tables.gap_table(med, "ours", "qi", n=10**9).tail(3).iloc[::-1]
            if len(worst) and worst["gap"].iloc[0] < 0:
                doc.table(
                    format_table(worst.rename(columns={"gap": "ours − qi"})),
                    caption="Groups where `ours` loses most against `qi`",
                )
    hard = tables.hardest_groups(med, labels, n=8)
    if len(hard):
        ctx.csv("hardest_groups", hard)
        doc.table(format_table(hard), caption="Hardest groups (lowest accuracy of the best method on average)")


def _section_agg(ctx: _Ctx) -> None:
    doc = ctx.doc
    doc.heading("Aggregation: max vs m-nearest-neighbours")
    slices = tables.agg_slices(ctx.ok)
    if not slices:
        doc.note(
            "The results hold no proxy setting evaluated with two or more aggregations (agg, m): "
            "aggregation study skipped."
        )
        return
    for i, (key, sub) in enumerate(slices):
        pre, gen, k, post, inf, shots = key
        med = tables.seed_medians(sub)
        show = ctx.paper != "no" and (ctx.paper == "yes" or tables.table1_is_paper_setting(med))
        at = tables.agg_table(med, key, show)
        name = f"agg_{gen}_k{k}_{pre}_{post}_{inf}" + (f"_n{shots}" if shots != -1 else "")
        ctx.csv(name, at)
        norms = "/".join(norm_label(x) for x in (pre, post, inf))
        desc = f"GEN {gen_label(gen, k)}, NORM {norms}" + (f", {shots} shots" if shots != -1 else "")
        n_groups = med[GROUP_COLS].drop_duplicates().shape[0]
        doc.para(
            f"**{desc}** — for each (AGG, m) the distance/weighting with the best average rank within this "
            f"slice ({med['label'].nunique()} configurations, {n_groups} groups)."
        )
        shown = at.drop(columns=["label"]).assign(m=at["m"].map(lambda m: "–" if m == -1 else str(m)))
        doc.table(
            format_table(
                shown,
                rename={
                    "slice_rank": "avg rank (slice)",
                    "avg_acc": "avg acc %",
                    "paper_acc": "paper %",
                    "n_groups": "groups",
                },
            )
        )
        if i == 0 and len(at) >= 2:
            short = {
                lab: agg_label(a, int(m), dist, w) + (f" [{lab}]" if lab in PRESETS else "")
                for lab, a, m, dist, w in zip(
                    at["label"], at["agg"], at["m"], at["distance"], at["weighting"], strict=True
                )
            }
            mat = tables.block_matrix(med, list(at["label"])).rename(columns=short)
            _cd_block(ctx, mat, "agg", f"aggregation, {desc}")


def _section_k_sweep(ctx: _Ctx) -> None:
    doc = ctx.doc
    doc.heading("Accuracy vs number of proxies k")
    data, info = tables.k_sweep_data(ctx.ok)
    if data.empty:
        doc.note("No GEN method was run with two or more values of k (AGG max): k-sweep figure skipped.")
        return
    ctx.csv("k_sweep", data)
    path = _plots().plot_k_sweep(
        _limit_panels(ctx, data), ctx.fig_path("k_sweep"), tuple(info["norms"]), show_paper=ctx.paper != "no"
    )
    ctx.figure(
        "k_sweep",
        path,
        "Accuracy vs k per backbone and dataset (paper Fig. 6 / 11b): lines per GEN "
        "method, `all` dashed, `mean` a star at k = 1; mean over the panel's groups of seed medians.",
    )
    wide = data.pivot_table(index=["backbone", "dataset", "gen"], columns="k", values="acc").reset_index()
    wide.columns = [f"k={c}" if isinstance(c, (int, np.integer)) else c for c in wide.columns]
    wide = wide.rename(columns={"k=-1": "all"})
    if "all" in wide.columns:  # every sample as a proxy: the last column
        wide = wide[[c for c in wide.columns if c != "all"] + ["all"]]
    doc.table(format_table(wide), caption="Accuracy (%) by k (k = -1 / all: every training sample is a proxy)")


def _section_few_shot(ctx: _Ctx) -> None:
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
    path = _plots().plot_few_shot(_limit_panels(ctx, data), ctx.fig_path("few_shot"), tuple(info["norms"]))
    ctx.figure(
        "few_shot",
        path,
        "Accuracy vs training samples per class (paper Fig. 10): median over seeds, band "
        "±1.96·std/√n; k-means with k ≥ n equals `all` and joins the k = n line.",
    )
    fs = data[data["shots"] > 0]
    wide = fs.pivot_table(index=["backbone", "dataset", "line"], columns="shots", values="acc").reset_index()
    wide.columns = [f"n={c}" if isinstance(c, (int, np.integer)) else c for c in wide.columns]
    doc.table(format_table(wide), caption="Median accuracy (%) by samples per class n")


def _section_d_in_1(ctx: _Ctx) -> None:
    doc = ctx.doc
    doc.heading('ImageNet "d in 1" tasks')
    data, info = tables.d_in_1_data(ctx.ok)
    if data.empty:
        doc.note('No "d in 1" label mappings (map{d}-{v}) with two or more k values: figure skipped.')
        return
    ctx.csv("d_in_1_curves", data)
    path = _plots().plot_d_in_1(_limit_panels(ctx, data), ctx.fig_path("d_in_1"), tuple(info["norms"]))
    ctx.figure(
        "d_in_1",
        path,
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


def _section_nc(ctx: _Ctx) -> None:
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
    path, fits = _plots().plot_nc_gain(pts, ctx.fig_path("nc1_gain"))
    ctx.figure(
        "nc1_gain",
        path,
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


def _excluded_test_rows(ok: pd.DataFrame) -> list[str]:
    """A bullet when test rows were left out (classes without training rows, ``task.unseen_test=exclude``)."""
    if "n_test_excluded" not in ok or not (ok["n_test_excluded"].fillna(0) > 0).any():
        return []
    cells = ok[ok["n_test_excluded"].fillna(0) > 0].drop_duplicates("cell_hash")
    return [f"**Test rows excluded**: {int(cells['n_test_excluded'].sum())} test rows in {len(cells)} cells belong to "
            "classes without training rows and were left out (task.unseen_test=exclude); accuracies cover the "
            "training classes only"]


def _section_runs(ctx: _Ctx) -> None:
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


def _versions(ctx: _Ctx) -> None:
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


def _definitions(ctx: _Ctx) -> None:
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
            "'Best' configurations (best custom rows, the AGG table) are chosen on the test accuracies they "
            "report, "
            "as in the paper: treat them as optimistic.",
        ]
    )


# ============================================================================================== helpers
def _list(series: pd.Series, limit: int = 12) -> str:
    vals = sorted({str(v) for v in series}, key=lambda s: (len(s), s) if s.isdigit() else (0, s))
    if not vals:
        return "–"
    return ", ".join(vals[:limit]) + (f", … ({len(vals)} in all)" if len(vals) > limit else "")


def _mapping_summary(series: pd.Series) -> str:
    from imprint_bench.report.data import is_d_in_1

    d1 = is_d_in_1(series)
    other = _list(series[~d1]) if (~d1).any() else ""
    parts = [other] if other else []
    if d1.any():
        parts.append(f"{series[d1].nunique()} ImageNet d-in-1 mappings")
    return "; ".join(parts) or "–"


def _limit_panels(ctx: _Ctx, data: pd.DataFrame, limit: int = MAX_PANELS) -> pd.DataFrame:
    """Keep the first ``limit`` (backbone, dataset) panels of a figure, with a note when some are dropped."""
    keys = sorted({(b, d) for b, d in zip(data["backbone"], data["dataset"], strict=True)})
    if len(keys) <= limit:
        return data
    ctx.doc.note(f"The figure shows {limit} of {len(keys)} backbone × dataset panels; the CSV has them all.")
    keep = set(keys[:limit])
    return data[[(b, d) in keep for b, d in zip(data["backbone"], data["dataset"], strict=True)]]


def _truncate(text: str, n: int) -> str:
    text = str(text).replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


def _log_to_tracker(ctx: _Ctx, tracker: Tracker, md: Path) -> None:
    """Send the summary, every CSV table and every figure to the tracker; tracker errors only warn."""
    summary = {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in ctx.summary.items()}
    summary["report/path"] = str(md)
    for what, call in (
        ("summary", lambda: tracker.log_summary(summary)),
        *((f"table {n}", (lambda n=n, d=d: tracker.log_table(f"report/{n}", d))) for n, (_, d) in ctx.csvs.items()),
        *((f"image {n}", (lambda n=n, p=p: tracker.log_image(f"report/{n}", p))) for n, p in ctx.figures.items()),
    ):
        try:
            call()
        except Exception as exc:
            if ctx.strict:
                raise
            log.warning("tracker failed to log %s: %s", what, exc)


# ============================================================================================== CLI
def report_main(argv: Sequence[str] | None = None) -> int:
    """``imprint-bench-report RESULTS [--out DIR] [--methods qi,ours|all] [--paper auto|yes|no]``."""
    ap = argparse.ArgumentParser(
        prog="imprint-bench-report",
        description="Build the benchmark report (Markdown + HTML, PNG figures, CSV tables) from a results table.",
    )
    ap.add_argument("results", metavar="RESULTS", help="results.parquet, or a directory holding one")
    ap.add_argument("--out", metavar="DIR", default=None, help="output folder (default: report/ next to RESULTS)")
    ap.add_argument(
        "--methods",
        default="all",
        help=f"comma list of presets for Table 1 and the CD diagram ({','.join(PRESETS)}) or 'all'",
    )
    ap.add_argument(
        "--paper",
        choices=PAPER_CHOICES,
        default="auto",
        help="show the paper's numbers beside ours (auto: only in the paper's setting)",
    )
    ap.add_argument(
        "--best-custom",
        type=int,
        default=None,
        metavar="N",
        help="also show the N best non-preset configurations (default 0, or 5 with fewer than 2 presets)",
    )
    ap.add_argument("--alpha", type=float, default=stats.ALPHA, help="significance level (default 0.05)")
    ap.add_argument("--title", default=None, help="report title")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        md = build_report(
            Path(args.results),
            Path(args.out) if args.out else None,
            methods=args.methods,
            paper=args.paper,
            best_custom=args.best_custom,
            alpha=args.alpha,
            title=args.title,
        )
    except ConfigError as exc:
        print(f"imprint-bench-report: error: {exc}", file=sys.stderr)
        return 2
    print(f"report written: {md} (and {md.with_suffix('.html').name}, figures/, tables/)")
    return 0
