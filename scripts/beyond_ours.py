"""Does any candidate inside the framework beat `ours` when nothing is tuned on test data?

Reads the `beyond_ours` experiment (``imprint-bench experiment=beyond_ours``), groups its configurations into
candidate families, lets each family choose its free parameter (k, m) per group (backbone × dataset × task) on
validation accuracy, and compares the chosen configurations' test accuracies with `ours`: average accuracy,
average ranks, Friedman and Wilcoxon–Holm against `ours`, and a CD diagram. Writes ``beyond_ours.md``,
``beyond_ours.csv`` and ``beyond_ours_cd.png`` next to the results and prints the Markdown.

    python scripts/beyond_ours.py [RESULTS_DIR]   (default outputs/results/beyond_ours)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from imprint_bench.errors import ConfigError
from imprint_bench.imprint.spec import K_AUTO
from imprint_bench.report import load_results
from imprint_bench.report.data import add_config_labels, ok_rows
from imprint_bench.report.plots import plot_cd, save_figure
from imprint_bench.report.render import Doc, fmt_p, format_table
from imprint_bench.report.selection import coverage, tuned_matrix, validated_rows
from imprint_bench.report.stats import cd_analysis, wilcoxon_holm
from imprint_bench.report.tables import seed_medians

BASELINE = "ours"
#: Candidates whose head is solved jointly over all classes (least squares): a fitted linear classifier, the
#: paper's oracle family, rather than imprinting each class from its own rows.
JOINT = ("kLS, k and NORM on val", "CL2N + kLS, k on val")
#: Margin (accuracy points) a candidate must clear on average, with Wilcoxon–Holm significance, to "beat" ours.
MARGIN = 1.0

Rows = pd.DataFrame
Family = Callable[[Rows], pd.Series]


def _norms(pre: str, inf: str, post: str = "l2") -> Family:
    return lambda r: (r["norm_pre"] == pre) & (r["norm_inf"] == inf) & (r["norm_post"] == post)


def _max_with(gen: str, **norms: str) -> Family:
    return lambda r: _norms(**norms)(r) & (r["gen"] == gen) & (r["agg"] == "max")


#: Candidate → the rows it may choose from (its free parameter is picked on validation per group).
FAMILIES: dict[str, Family] = {
    BASELINE: lambda r: _max_with("kmeans", pre="l2", inf="l2")(r) & (r["k"] == 20),
    "k-means, k on val": _max_with("kmeans", pre="l2", inf="l2"),
    "k-means, k=auto": lambda r: _max_with("kmeans", pre="l2", inf="l2")(r) & (r["k"] == K_AUTO),
    "CL2N (k=20)": lambda r: _max_with("kmeans", pre="cl2n", inf="cl2n")(r) & (r["k"] == 20),
    "CL2N, k on val": _max_with("kmeans", pre="cl2n", inf="cl2n"),
    "CL2N, k=auto": lambda r: _max_with("kmeans", pre="cl2n", inf="cl2n")(r) & (r["k"] == K_AUTO),
    "k-medoids, k on val": _max_with("kmedoids", pre="l2", inf="l2"),
    "FPS, k on val": _max_with("fps", pre="l2", inf="l2"),
    "m-NN (distance-weighted), m on val": lambda r: _norms("l2", "l2")(r) & (r["agg"] == "mnn"),
    "CL2N + m-NN, m on val": lambda r: _norms("cl2n", "cl2n")(r) & (r["agg"] == "mnn"),
    "kLS, k and NORM on val": lambda r: (r["gen"].isin(["kls", "ls"])) & (r["norm_pre"] != "cl2n"),
    "CL2N + kLS, k on val": lambda r: (r["gen"].isin(["kls", "ls"])) & (r["norm_pre"] == "cl2n"),
}


def family_matrix(ok: pd.DataFrame) -> pd.DataFrame:
    """Groups × candidates: the test accuracy (seed median) of the configuration each candidate chooses on
    validation accuracy in each group. Rows without validation accuracy never take part."""
    labelled = add_config_labels(validated_rows(ok))
    medians = seed_medians(labelled)
    parts = []
    for name, member in FAMILIES.items():
        chosen = medians[member(medians)]
        if not chosen.empty:
            parts.append(chosen.assign(candidate=name))
    if not parts:
        raise ConfigError("no candidate has validated rows: run `imprint-bench experiment=beyond_ours` first")
    matrix = tuned_matrix(pd.concat(parts, ignore_index=True), "candidate")
    return matrix[[c for c in FAMILIES if c in matrix.columns]]


def compare(matrix: pd.DataFrame) -> pd.DataFrame:
    """Per candidate: mean test accuracy, difference to ours, wins/losses over groups, average rank, and the
    Holm-adjusted Wilcoxon p against ours (on the groups both cover)."""
    complete = matrix.dropna()
    ranks = complete.rank(axis=1, ascending=False).mean()
    pairs = wilcoxon_holm(complete)
    versus = pairs[(pairs["method_a"] == BASELINE) | (pairs["method_b"] == BASELINE)]
    p_holm = {row["method_b"] if row["method_a"] == BASELINE else row["method_a"]: row["p_holm"]
              for _, row in versus.iterrows()}
    base = complete[BASELINE]
    rows = []
    for name in complete.columns:
        diff = complete[name] - base
        rows.append({"candidate": name, "avg test acc %": complete[name].mean(), "Δ vs ours": diff.mean(),
                     "wins / losses": f"{int((diff > 0).sum())} / {int((diff < 0).sum())}",
                     "avg rank": ranks[name], "Wilcoxon–Holm p vs ours": p_holm.get(name, np.nan)})
    table = pd.DataFrame(rows).sort_values("avg test acc %", ascending=False, kind="stable").reset_index(drop=True)
    table.attrs["n_groups"] = len(complete)
    return table


def verdict(table: pd.DataFrame, alpha: float = 0.05) -> str:
    """The honest sentence: does any candidate beat ours by ≥ MARGIN points with Wilcoxon–Holm significance?"""
    others = table[table["candidate"] != BASELINE]
    winners = others[(others["Δ vs ours"] >= MARGIN) & (others["Wilcoxon–Holm p vs ours"] < alpha)]
    best = others.iloc[0]
    if len(winners):
        top = winners.iloc[0]
        return (f"**Yes:** {top['candidate']} beats ours by {top['Δ vs ours']:+.2f} points on average "
                f"(Wilcoxon–Holm p = {top['Wilcoxon–Holm p vs ours']:.2g}).")
    p_best = best["Wilcoxon–Holm p vs ours"]
    if best["Δ vs ours"] >= MARGIN:
        return (f"**Not shown:** {best['candidate']} is {best['Δ vs ours']:+.2f} points above ours on average, but "
                f"not significantly (Wilcoxon–Holm p = {p_best:.2g} over {int(table.attrs['n_groups'])} groups), "
                "so no candidate clears the bar of +1 point with significance.")
    return (f"**No:** no candidate beats ours by {MARGIN:g} point with Wilcoxon–Holm significance. The best, "
            f"{best['candidate']}, differs by {best['Δ vs ours']:+.2f} points on average (Wilcoxon–Holm "
            f"p = {p_best:.2g}), {MARGIN - best['Δ vs ours']:.2f} points short of the bar.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", type=Path, default=Path("outputs/results/beyond_ours"))
    args = parser.parse_args(argv)
    try:
        ok = ok_rows(load_results(args.results))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cov = coverage(ok)
    matrix = family_matrix(ok)
    complete = matrix.dropna()
    table = compare(matrix)
    out = args.results if args.results.is_dir() else args.results.parent
    table.to_csv(out / "beyond_ours.csv", index=False)
    cd = cd_analysis(complete)
    save_figure(plot_cd(cd, "beyond ours: candidates tuned on validation (test accuracy ranks)"),
                out / "beyond_ours_cd.png")
    groups = ", ".join(sorted({f"{b}" for b in complete.index.get_level_values("backbone")}))
    doc = Doc("beyond ours: candidates tuned on validation data")
    doc.para(f"{len(complete)} groups (backbone × dataset × task; {groups}), seed medians; {cov.n_validated} runs "
             "with validation accuracy (20 % of each class's training rows held out). Friedman "
             f"p = {fmt_p(cd.friedman.pvalue)}.")
    if len(complete) < len(matrix):
        doc.note(f"{len(matrix) - len(complete)} groups left out: a candidate has no run there.")
    doc.table(format_table(table, pcols=("Wilcoxon–Holm p vs ours",)))
    doc.para(verdict(table))
    per_class = table[~table["candidate"].isin(JOINT)]
    doc.para("Imprinting in the strict sense (each class's proxies from its own rows only; without the jointly "
             f"solved kLS candidates): {verdict(per_class)}")
    text = doc.to_markdown()
    (out / "beyond_ours.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
