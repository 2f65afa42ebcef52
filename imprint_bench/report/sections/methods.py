"""Report sections that compare methods: Table 1, rank statistics with CD diagrams, breakdowns, aggregation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from imprint_bench.imprint.registry import agg_label, gen_label
from imprint_bench.imprint.spec import PRESETS
from imprint_bench.report import paper as paper_consts
from imprint_bench.report import selection, stats, tables
from imprint_bench.report.context import ReportContext, plots
from imprint_bench.report.data import GROUP_COLS, full_data_slice, norm_label
from imprint_bench.report.render import fmt_p, format_table


def write_table1(ctx: ReportContext, wanted: list[str] | None, best_custom: int | None) -> list[str]:
    """Table 1 of the full-data slice (CSV, table, figure); return its method labels."""
    doc = ctx.doc
    doc.heading("Table 1: imprinting methods compared")
    sl, shots = full_data_slice(ctx.ok)
    if sl.empty:
        doc.note("No successful rows: Table 1 skipped.")
        return []
    med = tables.seed_medians(sl)
    labels, notes = tables.select_table1_labels(med, wanted, best_custom, on_validation=ctx.validation.available)
    for n in notes:
        doc.note(n)
    if not labels:
        doc.note("None of the requested methods has results: Table 1 skipped.")
        return []
    med1 = med[med["label"].isin(labels)]
    is_paper = tables.table1_is_paper_setting(med1)
    show = ctx.show_paper(is_paper) and any(lab in paper_consts.TABLE1_ACC for lab in labels)
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
    diamonds = "paper_acc" in t1 and bool(t1["paper_acc"].notna().any())  # drawn by plot_table1
    ctx.figure(
        "table1",
        plots().plot_table1(t1),
        "Average accuracy of the Table-1 methods (error bars: ±1.96·stderr over groups"
        + ("; diamonds: paper values)." if diamonds else ")."),
    )
    for row in t1.itertuples(index=False):
        ctx.summary[f"report/table1/{row.label}/avg_acc"] = row.avg_acc
        ctx.summary[f"report/table1/{row.label}/n_groups"] = row.n_groups
    ctx.table1_med, ctx.table1_paper = med1, show
    return labels


def write_ranks(ctx: ReportContext, labels: list[str]) -> None:
    """Rank statistics and the CD diagram of the Table-1 methods."""
    doc = ctx.doc
    doc.heading("Average ranks and critical-difference diagram")
    med = ctx.table1_med
    if med is None or len(labels) < 2:
        doc.note("Fewer than 2 methods in Table 1: rank statistics skipped.")
        return
    mat = tables.block_matrix(med, labels)
    paper_ranks = paper_consts.TABLE1_CD_RANKS if ctx.table1_paper and set(labels) == set(PRESETS) else None
    cd_block(ctx, mat, "table1", "Table-1 methods", paper_ranks)
    if paper_ranks:
        doc.note("Paper CD ranks are among all five methods with dense ties (spec §9.1); ours average ties.")


def cd_block(
    ctx: ReportContext, mat: pd.DataFrame, name: str, what: str, paper_ranks: dict[str, float] | None = None
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
        plots().plot_cd(cd, f"Critical-difference diagram: {what}"),
        f"Critical-difference diagram ({what}): average rank, bars join methods not significantly different.",
    )
    ctx.summary[f"report/{name}/friedman_p"] = fr.pvalue
    return cd


def write_breakdown(ctx: ReportContext, labels: list[str]) -> None:
    """Table-1 accuracies per backbone / dataset / task, the largest gaps and the hardest groups."""
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


def write_aggregation(ctx: ReportContext) -> None:
    """max vs m-nearest-neighbour aggregation per proxy setting, with a CD diagram for the first; with validation
    data each (AGG, m) keeps the distance/weighting chosen on it, beside the test-selected one."""
    doc = ctx.doc
    doc.heading("Aggregation: max vs m-nearest-neighbours")
    on_val = ctx.validation.available
    slices = tables.agg_slices(selection.validated_rows(ctx.ok) if on_val else ctx.ok)
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
        at = tables.agg_table(med, key, show, on_validation=on_val)
        name = f"agg_{gen}_k{k}_{pre}_{post}_{inf}" + (f"_n{shots}" if shots != -1 else "")
        ctx.csv(name, at)
        norms = "/".join(norm_label(x) for x in (pre, post, inf))
        desc = f"GEN {gen_label(gen, k)}, NORM {norms}" + (f", {shots} shots" if shots != -1 else "")
        n_groups = med[GROUP_COLS].drop_duplicates().shape[0]
        how = ("validation accuracy; `avg acc %` is its test accuracy, `test-selected %` the best test accuracy "
               "of the (AGG, m) (optimistic)" if on_val else f"test accuracy: {selection.TEST_SELECTED}")
        doc.para(
            f"**{desc}** — for each (AGG, m) the distance/weighting with the best average rank within this "
            f"slice ({med['label'].nunique()} configurations, {n_groups} groups), ranked on {how}."
        )
        shown = at.drop(columns=["label"]).assign(m=at["m"].map(lambda m: "–" if m == -1 else str(m)))
        doc.table(
            format_table(
                shown,
                rename={
                    "slice_rank": "avg val rank (slice)" if on_val else "avg rank (slice)",
                    "avg_acc": "avg acc %",
                    "paper_acc": "paper %",
                    "n_groups": "groups",
                    "test_selected_acc": "test-selected %",
                    "optimism_gap": "optimism gap",
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
            cd_block(ctx, mat, "agg", f"aggregation, {desc}")
