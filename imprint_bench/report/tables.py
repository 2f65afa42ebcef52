"""Aggregations behind the report: seed medians, Table 1, breakdowns and the data of every figure.

The paper's "average accuracy" (paper_results.md §1.5): for each group (backbone × dataset × mapping × task)
take the median over seeds of the test accuracy, then the arithmetic mean over groups; std uses ddof = 1 and
stderr = std / √n_groups.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from imprint_bench.report import paper, selection, stats
from imprint_bench.report.data import (
    CONFIG_COLS,
    GROUP_COLS,
    PRESET_ORDER,
    d_in_1,
    full_data_slice,
    is_d_in_1,
    prefer_slice,
    stage_columns,
)

NORM_COLS = ["norm_pre", "norm_post", "norm_inf"]
L2_NORMS = ("l2", "l2", "l2")


# ------------------------------------------------------------------------------------------- medians
def seed_medians(df: pd.DataFrame, value: str = "acc") -> pd.DataFrame:
    """One row per (group, configuration): median over seeds of ``value`` (+ validation accuracy, macro-F1, GEN
    time, seed count).

    ``df`` must hold successful rows with a ``label`` column (see :func:`data.add_config_labels`).
    """
    keys = GROUP_COLS + CONFIG_COLS + ["label"]
    if df.empty:
        return pd.DataFrame(columns=[*keys, value, "val_acc", "macro_f1", "gen_s", "infer_s", "n_seeds", "n_rows"])
    g = df.groupby(keys, dropna=False, sort=False)
    out = g.agg(
        **{
            value: (value, "median"),
            "val_acc": ("val_acc", "median"),
            "macro_f1": ("macro_f1", "median"),
            "gen_s": ("gen_s", "median"),
            "infer_s": ("infer_s", "median"),
            "n_seeds": ("seed", "nunique"),
            "n_rows": ("seed", "size"),
        }
    )
    return out.reset_index()


def block_matrix(medians: pd.DataFrame, labels: list[str] | None = None, value: str = "acc") -> pd.DataFrame:
    """Blocks (groups) × labels matrix of seed-median scores; NaN where a label lacks a group."""
    sub = medians if labels is None else medians[medians["label"].isin(labels)]
    mat = sub.pivot_table(index=GROUP_COLS, columns="label", values=value, aggfunc="first")
    if labels is not None:
        mat = mat.reindex(columns=[lab for lab in labels if lab in mat.columns])
    mat.columns.name = None
    return mat


def summarise(medians: pd.DataFrame, labels: list[str], value: str = "acc") -> pd.DataFrame:
    """Per label: avg acc (mean over groups), std (ddof=1), stderr, n_groups, avg rank, wins, F1, times."""
    rows = []
    mat = block_matrix(medians, labels, value)
    ranks = stats.average_ranks(mat) if mat.shape[1] >= 1 else pd.Series(dtype=float)
    wins = stats.wins(mat) if mat.shape[1] >= 1 else pd.Series(dtype=float)
    for lab in labels:
        sub = medians[medians["label"] == lab]
        vals = sub[value].to_numpy(float)
        n = len(vals)
        std = float(np.std(vals, ddof=1)) if n > 1 else np.nan
        rows.append(
            {
                "label": lab,
                "avg_acc": float(np.mean(vals)) if n else np.nan,
                "std": std,
                "stderr": std / np.sqrt(n) if n > 1 else np.nan,
                "n_groups": n,
                "avg_rank": float(ranks.get(lab, np.nan)),
                "wins": int(wins.get(lab, 0)),
                "macro_f1": float(sub["macro_f1"].mean()) if n else np.nan,
                "gen_s": float(sub["gen_s"].median()) if n else np.nan,
                "infer_s": float(sub["infer_s"].median()) if n else np.nan,
            }
        )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------- Table 1
def select_table1_labels(
    medians: pd.DataFrame, methods: list[str] | None, best_custom: int | None, on_validation: bool = False
) -> tuple[list[str], list[str]]:
    """Labels of Table 1: requested presets in paper order, then the best custom configs (chosen on the seed
    medians of ``val_acc`` when ``on_validation``, else of the test accuracy); plus notes."""
    notes = []
    present = set(medians["label"])
    wanted = PRESET_ORDER if methods is None else methods
    labels = [m for m in wanted if m in present]
    absent = [m for m in wanted if m not in present]
    if absent and methods is not None:
        notes.append(f"Requested method(s) without successful full-data rows: {', '.join(absent)}.")
    n_custom = best_custom if best_custom is not None else (0 if len(labels) >= 2 else 5)
    if n_custom > 0:
        value = selection.VAL if on_validation else "acc"
        custom = best_custom_labels(medians[["label", value]], exclude=set(PRESET_ORDER) | set(labels), n=n_custom)
        if custom and best_custom is None:
            what = "No preset method" if not labels else "Fewer than two preset methods"
            how = ("by average validation accuracy over the groups covered by the most configurations; the table "
                   "shows their test accuracy" if on_validation else
                   f"by average accuracy over the groups covered by the most configurations: {selection.TEST_SELECTED}")
            notes.append(f"{what} in the results: adding the {len(custom)} best other configurations ({how}).")
        labels += custom
    return labels, notes


def best_custom_labels(scores: pd.DataFrame, exclude: set[str], n: int) -> list[str]:
    """Top-n non-preset labels by their average score, among those covering the most groups.

    ``scores``: seed medians reduced to ``label`` and one score column (test or validation accuracy), one row
    per (group, label); rows with a NaN score do not count.
    """
    value = next(c for c in scores.columns if c != "label")
    sub = scores[~scores["label"].isin(exclude)].dropna(subset=[value])
    if sub.empty:
        return []
    cover = sub.groupby("label").size()
    full = cover[cover == cover.max()].index
    avg = sub[sub["label"].isin(full)].groupby("label")[value].mean().sort_values(ascending=False)
    return list(avg.index[:n])


def table1(medians: pd.DataFrame, labels: list[str], show_paper: bool) -> pd.DataFrame:
    """Table 1: stage columns, avg acc ± std/stderr, n groups, avg rank, (paper value and difference)."""
    summ = summarise(medians, labels)
    first = medians.drop_duplicates("label").set_index("label")
    stage = pd.DataFrame([{"label": lab, **stage_columns(first.loc[lab])} for lab in labels])
    out = stage.merge(summ, on="label", how="left")
    out.insert(0, "method", [paper.TABLE1_NAMES.get(lab, lab) for lab in labels])
    if show_paper:
        out["paper_acc"] = [paper.TABLE1_ACC.get(lab, np.nan) for lab in labels]
        out["diff"] = out["avg_acc"] - out["paper_acc"]
    return out


def table1_is_paper_setting(medians: pd.DataFrame) -> bool:
    """True when the Table-1 slice is (a subset of) the paper's 4 backbones × 3 datasets × 4 tasks."""
    return paper.is_paper_setting(
        medians["backbone"].unique(),
        medians["dataset"].unique(),
        medians["task"].unique(),
        medians["mapping"].unique(),
    )


def breakdown(medians: pd.DataFrame, labels: list[str], by: str) -> pd.DataFrame:
    """Mean over groups of the seed-median accuracy, ``by`` (e.g. backbone) × labels, plus an ``all`` row."""
    sub = medians[medians["label"].isin(labels)]
    piv = sub.pivot_table(index=by, columns="label", values="acc", aggfunc="mean")
    piv = piv.reindex(columns=[lab for lab in labels if lab in piv.columns])
    piv.loc["(all)"] = sub.groupby("label")["acc"].mean().reindex(piv.columns)
    piv.columns.name = None
    return piv.reset_index()


def gap_table(medians: pd.DataFrame, a: str, b: str, n: int = 10) -> pd.DataFrame:
    """Groups sorted by the accuracy gap a − b (largest first), both seed medians shown."""
    mat = stats.complete_blocks(block_matrix(medians, [a, b]))
    if mat.shape[1] < 2 or mat.empty:
        return pd.DataFrame()
    out = mat.assign(gap=mat[a] - mat[b]).sort_values("gap", ascending=False).reset_index()
    return out.head(n)


def hardest_groups(medians: pd.DataFrame, labels: list[str], n: int = 10) -> pd.DataFrame:
    """Groups with the lowest accuracy of the best label (by avg acc), all labels as columns."""
    mat = block_matrix(medians, labels)
    if mat.empty:
        return pd.DataFrame()
    best = mat.mean().idxmax()
    return mat.sort_values(best).head(n).reset_index()


# ------------------------------------------------------------------------------------------- AGG study
def agg_slices(ok: pd.DataFrame, limit: int = 3) -> list[tuple[tuple, pd.DataFrame]]:
    """Proxy slices (NORMs, GEN, k, shots) with ≥ 2 distinct (agg, m) settings, most relevant first."""
    keys = ["norm_pre", "gen", "k", "norm_post", "norm_inf", "shots"]
    if ok.empty:
        return []
    n_settings = ok.drop_duplicates([*keys, "agg", "m"]).groupby(keys, dropna=False).size()
    cands = n_settings[n_settings >= 2]

    def priority(key: tuple) -> tuple:
        pre, gen, k, post, inf, shots = key
        return (
            shots != -1,
            (pre, post, inf) != L2_NORMS,
            not (gen == "kmeans" and k == 20),
            gen != "all",
            -int(cands[key]),
        )

    ordered = sorted(cands.index, key=priority)[:limit]
    out = []
    for key in ordered:
        mask = np.logical_and.reduce([ok[c] == v for c, v in zip(keys, key, strict=True)])
        out.append((key, ok[mask]))
    return out


def agg_table(medians: pd.DataFrame, key: tuple, show_paper: bool, on_validation: bool = False) -> pd.DataFrame:
    """Best distance/weighting per (agg, m) by average rank within the slice (reference highlighter).

    The ranks are of the test accuracy, or with ``on_validation`` of ``val_acc``; then the table also shows the
    test-selected optimum of each (agg, m) (``test_selected_acc``) and the ``optimism_gap``.
    """
    cfg = medians.drop_duplicates("label").set_index("label")[["agg", "m", "distance", "weighting"]]
    value = selection.VAL if on_validation else "acc"
    chosen = _best_per_agg(medians[[*GROUP_COLS, "label", value]], cfg)
    best = chosen.join(summarise(medians, list(chosen["label"])).set_index("label"), on="label")
    pre, gen, k, post, inf, _shots = key
    if show_paper and gen == "kmeans" and k == 20 and (pre, post, inf) == L2_NORMS:
        best["paper_acc"] = [
            paper.AGG_KMEANS20_ACC.get((a, int(m)), np.nan) for a, m in zip(best["agg"], best["m"], strict=True)
        ]
    if on_validation:
        on_test = _best_per_agg(medians[[*GROUP_COLS, "label", "acc"]], cfg)
        test_acc = summarise(medians, list(on_test["label"])).set_index("label")["avg_acc"]
        test_pick = on_test.set_index(["agg", "m"])["label"]
        picks = [test_pick[(a, m)] for a, m in zip(best["agg"], best["m"], strict=True)]
        best["test_selected_acc"] = test_acc.reindex(picks).to_numpy()
        best["optimism_gap"] = best["test_selected_acc"] - best["avg_acc"]
    columns = ["label", "agg", "m", "distance", "weighting", "slice_rank", "avg_acc", "std", "stderr", "n_groups",
               "paper_acc", "test_selected_acc", "optimism_gap"]
    return best[[c for c in columns if c in best.columns]].reset_index(drop=True)


def _best_per_agg(scores: pd.DataFrame, cfg: pd.DataFrame) -> pd.DataFrame:
    """Per (agg, m) the label with the best average rank of the score within the slice (ties: higher mean),
    with its ``slice_rank``; ``scores`` holds the group columns, ``label`` and one score column."""
    value = next(c for c in scores.columns if c not in (*GROUP_COLS, "label"))
    mat = scores.pivot_table(index=GROUP_COLS, columns="label", values=value, aggfunc="first")
    ranked = pd.DataFrame({"slice_rank": stats.block_ranks(mat).mean(axis=0), "slice_mean": mat.mean(axis=0)})
    ranked = ranked.join(cfg).sort_values(["slice_rank", "slice_mean"], ascending=[True, False])
    best = ranked.groupby(["agg", "m"], sort=False).head(1).rename_axis("label").reset_index()
    best = best.assign(_order=(best["agg"] != "max").astype(int)).sort_values(["_order", "m"])
    return best.drop(columns=["_order", "slice_mean"]).reset_index(drop=True)


# ------------------------------------------------------------------------------------------- figure data
def _pool_tasks(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Rows of task ``all`` if present, else all tasks (pooled); plus a description."""
    if (df["task"] == "all").any():
        return df[df["task"] == "all"], "task all"
    tasks = sorted(df["task"].unique())
    return df, ("task " + tasks[0]) if len(tasks) == 1 else f"mean over tasks {', '.join(tasks)}"


def k_sweep_data(ok: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Accuracy vs k per (backbone, dataset, gen): max aggregation, full data, L2/L2/L2 preferred.

    Returns columns backbone, dataset, gen, k (0 = auto), acc and val_acc (means over the panel's groups of seed
    medians), n_groups, scope; and a dict describing the slice. Empty when no GEN method has two k values > 0
    in any panel.
    """
    base = ok[(ok["agg"] == "max") & ~is_d_in_1(ok["mapping"])]
    base, shots = full_data_slice(base)
    base, norms = prefer_slice(base, NORM_COLS, L2_NORMS)
    info = {"norms": norms, "shots": shots}
    if base.empty:
        return pd.DataFrame(), info
    rows = []
    for (bb, ds), panel in base.groupby(["backbone", "dataset"], sort=True):
        panel, scope = _pool_tasks(panel)
        med = panel.groupby([*GROUP_COLS, "gen", "k"])[["acc", "val_acc"]].median().reset_index()
        agg = med.groupby(["gen", "k"]).agg(acc=("acc", "mean"), val_acc=("val_acc", "mean"),
                                            n_groups=("acc", "size")).reset_index()
        for r in agg.itertuples(index=False):
            rows.append(
                {
                    "backbone": bb,
                    "dataset": ds,
                    "gen": r.gen,
                    "k": int(r.k),
                    "acc": r.acc,
                    "val_acc": r.val_acc,
                    "n_groups": r.n_groups,
                    "scope": scope,
                }
            )
    data = pd.DataFrame(rows)
    swept = data[data["k"] > 0].groupby(["backbone", "dataset", "gen"])["k"].nunique()
    return (data if (swept >= 2).any() else pd.DataFrame()), info


def few_shot_data(ok: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Accuracy vs samples per class for mean / k-means per k / all: median over seeds ± 1.96·std/√n.

    k-means with k equal to the shots value is the same computation as ``all`` (each sample its own cluster),
    so it joins the ``k = n`` line. Full-data rows (shots = −1) are kept, at x = n_train / n_classes.
    """
    base = ok[(ok["agg"] == "max") & ok["gen"].isin(["mean", "kmeans", "all"]) & ~is_d_in_1(ok["mapping"])]
    base, norms = prefer_slice(base, NORM_COLS, L2_NORMS)
    info = {"norms": norms}
    # panels: (backbone, dataset) pairs with at least two few-shot values
    n_shots = base[base["shots"] > 0].groupby(["backbone", "dataset"])["shots"].nunique()
    panels = set(n_shots[n_shots >= 2].index)
    base = base[[(b, d) in panels for b, d in zip(base["backbone"], base["dataset"], strict=True)]]
    if base.empty:
        return pd.DataFrame(), info
    base = base.assign(
        line=[_few_shot_line(g, k, s) for g, k, s in zip(base["gen"], base["k"], base["shots"], strict=True)]
    )
    full_n = (base["n_train"] / base["n_classes"]).where(base["shots"] == -1)
    base = base.assign(n=np.where(base["shots"] > 0, base["shots"], full_n))
    rows = []
    for (bb, ds), panel in base.groupby(["backbone", "dataset"], sort=True):
        panel, scope = _pool_tasks(panel)
        few_lines = set(panel.loc[panel["shots"] > 0, "line"])
        panel = panel[panel["line"].isin(few_lines)]  # full-data rows only for lines with a few-shot curve
        # per seed: mean over the panel's groups (tasks / mappings), then statistics over seeds
        per_seed = panel.groupby(["line", "shots", "seed"]).agg(acc=("acc", "mean"), n=("n", "median"))
        for (line, shots), g in per_seed.groupby(level=["line", "shots"]):
            vals = g["acc"].to_numpy(float)
            sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
            rows.append(
                {
                    "backbone": bb,
                    "dataset": ds,
                    "line": line,
                    "shots": int(shots),
                    "n": float(g["n"].median()),
                    "acc": float(np.median(vals)),
                    "std": sd,
                    "n_seeds": len(vals),
                    "ci": 1.96 * sd / np.sqrt(len(vals)),
                    "scope": scope,
                }
            )
    return pd.DataFrame(rows), info


def _few_shot_line(gen: str, k: int, shots: int) -> str:
    if gen == "mean" or (gen == "kmeans" and k == 1):
        return "k=1 (mean)"
    if k == 0:
        return "k-means k=auto"
    if gen == "all" or k == -1 or (shots > 0 and k >= shots):
        return "k=n (all samples)"
    return f"k-means k={k}"


def few_shot_line_order(line: str) -> tuple[int, int]:
    """Sort key: mean first, k-means by k (auto after the numbers), all last."""
    if line.startswith("k=1"):
        return (0, 1)
    if line.startswith("k=n"):
        return (2, 0)
    k = line.rsplit("=", 1)[1]
    return (1, int(k)) if k.isdigit() else (1, 10**9)


def d_in_1_data(ok: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """ImageNet "d in 1": accuracy (and val_acc) vs k per (backbone, dataset, d), mean over variants of the seed
    medians; k = auto (0) is no point of the k axis and left out."""
    base = ok[is_d_in_1(ok["mapping"]) & (ok["agg"] == "max") & ok["gen"].isin(["mean", "kmeans"]) & (ok["k"] != 0)]
    base, shots = full_data_slice(base)
    base, norms = prefer_slice(base, NORM_COLS, L2_NORMS)
    info = {"norms": norms, "shots": shots}
    if base.empty:
        return pd.DataFrame(), info
    dv = [d_in_1(m) for m in base["mapping"]]
    base = base.assign(d=[x[0] for x in dv], variant=[x[1] for x in dv], k=base["k"].where(base["gen"] != "mean", 1))
    med = base.groupby(["backbone", "dataset", "d", "variant", "task", "k"])[["acc", "val_acc"]].median()
    var = med.groupby(["backbone", "dataset", "d", "variant", "k"]).mean().reset_index()
    out = var.groupby(["backbone", "dataset", "d", "k"]).agg(
        acc=("acc", "mean"), std=("acc", "std"), n_variants=("acc", "size"), val_acc=("val_acc", "mean")
    ).reset_index()
    out["std"] = out["std"].fillna(0.0)
    out["ci"] = 1.96 * out["std"] / np.sqrt(out["n_variants"])
    swept = out.groupby(["backbone", "dataset", "d"])["k"].nunique()
    return (out if (swept >= 2).any() else pd.DataFrame()), info


def d_in_1_table(data: pd.DataFrame, show_paper: bool) -> pd.DataFrame:
    """Per (backbone, dataset, d): acc at k=1, k=d, k=d+1, the test-selected best k and its accuracy (+ paper
    values); where ``val_acc`` exists also the k chosen on it, its test accuracy and the optimism gap."""
    keys = ["backbone", "dataset", "d"]
    on_val = selection.choose_best(data[[*keys, "k", "val_acc"]], keys, candidate="k").set_index(keys)["k"]
    rows = []
    for (bb, ds, d), g in data.groupby(keys):
        by_k = g.set_index("k")["acc"]
        row = {
            "backbone": bb,
            "dataset": ds,
            "d": int(d),
            "acc_k1": by_k.get(1, np.nan),
            "acc_kd": by_k.get(d, np.nan),
            "acc_kd1": by_k.get(d + 1, np.nan),
            "best_k": int(by_k.idxmax()),
            "best_acc": float(by_k.max()),
            "n_variants": int(g["n_variants"].max()),
        }
        if len(on_val):
            val_k = on_val.get((bb, ds, d))
            row["val_best_k"] = np.nan if val_k is None else int(val_k)
            row["val_best_acc"] = np.nan if val_k is None else float(by_k[val_k])
            row["optimism_gap"] = row["best_acc"] - row["val_best_acc"]
        if show_paper:
            ref = paper.D_IN_1_ACC.get((str(bb), int(d)))
            row["paper_acc_k1"], row["paper_acc_kd"] = ref if ref else (np.nan, np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def nc1_table(df: pd.DataFrame, show_paper: bool) -> pd.DataFrame:
    """NC1 per backbone × dataset × mapping × task (d-in-1 mappings pooled per d: mean over variants)."""
    sub = df[np.isfinite(df["nc1"]) | np.isfinite(df["nc1_ref"])]
    if sub.empty:
        return pd.DataFrame()
    full, _ = full_data_slice(sub)
    per = (
        full.groupby(GROUP_COLS)
        .agg(nc1=("nc1", "median"), nc1_ref=("nc1_ref", "median"), n_classes=("n_classes", "median"))
        .reset_index()
    )
    dv = [d_in_1(m) for m in per["mapping"]]
    per["mapping"] = [f"map{x[0]}-*" if x else m for x, m in zip(dv, per["mapping"], strict=True)]
    out = (
        per.groupby(GROUP_COLS, sort=True)
        .agg(
            nc1=("nc1", "mean"),
            nc1_ref=("nc1_ref", "mean"),
            n_classes=("n_classes", "median"),
            n_mappings=("nc1", "size"),
        )
        .reset_index()
    )
    if show_paper:
        out["paper_nc1_ref"] = [
            paper.lookup(paper.NC1_REF, b, d) if t == "all" and m == "none" else np.nan
            for b, d, t, m in zip(out["backbone"], out["dataset"], out["task"], out["mapping"], strict=True)
        ]
        out["paper_nc1_ref"] = out["paper_nc1_ref"].astype(float)
    return out


def nc_gain_data(ok: pd.DataFrame) -> pd.DataFrame:
    """Fig. 12 points: gain of k-means k=5 over k=1 (mean over seeds) vs NC1 per group (d-in-1 per d)."""
    base = ok[(ok["agg"] == "max") & (((ok["gen"] == "kmeans") & ok["k"].isin([1, 5])) | (ok["gen"] == "mean"))]
    base, _ = full_data_slice(base)
    base, _ = prefer_slice(base, NORM_COLS, L2_NORMS)
    if base.empty:
        return pd.DataFrame()
    base = base.assign(k=base["k"].where(base["gen"] != "mean", 1))
    acc = base.pivot_table(index=GROUP_COLS, columns="k", values="acc", aggfunc="mean")
    if 1 not in acc.columns or 5 not in acc.columns:
        return pd.DataFrame()
    nc = base.groupby(GROUP_COLS)[["nc1", "nc1_ref"]].median()
    pts = pd.DataFrame({"gain": acc[5] - acc[1], "acc_k1": acc[1]}).join(nc).dropna(subset=["gain"]).reset_index()
    dv = [d_in_1(m) for m in pts["mapping"]]
    pts["family"] = ["ImageNet d-in-1" if x else ds for x, ds in zip(dv, pts["dataset"], strict=True)]
    pts["mapping"] = [f"map{x[0]}-*" if x else m for x, m in zip(dv, pts["mapping"], strict=True)]
    return pts.groupby(["family", *GROUP_COLS], as_index=False)[["gain", "acc_k1", "nc1", "nc1_ref"]].mean()


def seed_counts(ok: pd.DataFrame) -> pd.DataFrame:
    """Distinct seeds per (group, configuration label): the reference warned when this was not constant."""
    if ok.empty:
        return pd.DataFrame(columns=[*GROUP_COLS, "label", "n_seeds"])
    return ok.groupby([*GROUP_COLS, "label"])["seed"].nunique().rename("n_seeds").reset_index()


# ------------------------------------------------------------------------------------------- console
def format_table1(results: pd.DataFrame, max_rows: int = 15) -> str:
    """Plain-text Table 1 of a raw results table, for consoles (e.g. after a Hydra multirun).

    Rows: the presets present (paper order), then the other configurations by average accuracy, up to
    ``max_rows``. Never raises: problems come back as a one-line message.
    """
    from imprint_bench.errors import ConfigError
    from imprint_bench.report.data import add_config_labels, ok_rows, validate_results

    try:
        ok = add_config_labels(ok_rows(validate_results(results)))
    except ConfigError as exc:
        return f"(no Table 1: {exc})"
    if ok.empty:
        return "(no Table 1: no successful rows)"
    med = seed_medians(ok)
    avg = med.groupby("label")["acc"].mean().sort_values(ascending=False)
    presets = [p for p in PRESET_ORDER if p in avg.index]
    labels = (presets + [lab for lab in avg.index if lab not in presets])[:max_rows]
    t1 = table1(med, labels, show_paper=False)
    t1["seeds"] = [int(med.loc[med["label"] == lab, "n_seeds"].max()) for lab in labels]
    cols = ["label", "NORMpre", "GEN", "NORMpost", "NORMinf", "AGG", "avg_acc", "std", "n_groups", "seeds"]
    text = _text_table(t1[cols].rename(columns={"label": "method", "avg_acc": "avg acc %", "n_groups": "groups"}))
    more = len(avg) - len(labels)
    head = "Table 1 (median over seeds per group, then mean over groups):"
    return "\n".join([head, text] + ([f"... and {more} more configurations"] if more > 0 else []))


def _text_table(df: pd.DataFrame) -> str:
    """Fixed-width text table (floats with 2 decimals, NaN as '-')."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return "-" if np.isnan(v) else f"{v:.2f}"
        return str(v)

    cells = [[str(c) for c in df.columns]] + [[cell(v) for v in row] for row in df.itertuples(index=False)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(df.columns))]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    lines = []
    for j, row in enumerate(cells):
        parts = [v.rjust(w) if n else v.ljust(w) for v, w, n in zip(row, widths, numeric, strict=True)]
        lines.append("  ".join(parts).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


#: Columns that tell apart the configurations of class-incremental rows.
INCREMENTAL_CONFIG = ["method", "norm_pre", "gen", "gen_args", "k", "batch_size", "norm_post", "norm_inf", "agg", "m",
                      "distance", "weighting", "lam"]


def incremental_curves(rows: pd.DataFrame) -> pd.DataFrame:
    """Class-incremental ok rows as curves: per configuration label, backbone, dataset and step, the mean accuracy
    (incremental and joint) and first-step accuracy over cells (seeds, class orders)."""
    from imprint_bench.imprint.registry import config_text

    data = rows[rows["status"].eq("ok")].copy()
    if data.empty:
        return data
    data["label"] = [m if m != "custom" else config_text(r) for m, r in zip(data["method"], data.to_dict("records"),
                                                                          strict=True)]
    data["gap"] = (data["acc"] - data["joint_acc"]).abs()
    return (data.groupby(["label", "backbone", "dataset", "step"], sort=False)
            .agg(n_seen_classes=("n_seen_classes", "mean"), acc=("acc", "mean"), joint_acc=("joint_acc", "mean"),
                 first_step_acc=("first_step_acc", "mean"), cells=("cell_hash", "nunique"), max_gap=("gap", "max"))
            .reset_index())


def incremental_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Per configuration label (and backbone / dataset): the average incremental accuracy (mean over steps), the
    final accuracy beside joint imprinting's, the forgetting (first-step classes' accuracy at the first step minus
    at the last) and whether the method is exactly incremental (its accuracy equals joint imprinting's at every
    step of every cell)."""
    out = []
    for (label, backbone, dataset), c in curves.groupby(["label", "backbone", "dataset"], sort=False):
        c = c.sort_values("step")
        out.append({"method": label, "backbone": backbone, "dataset": dataset, "steps": len(c),
                    "avg_incremental_acc": c["acc"].mean(), "final_acc": c["acc"].iloc[-1],
                    "joint_final_acc": c["joint_acc"].iloc[-1],
                    "forgetting": c["first_step_acc"].iloc[0] - c["first_step_acc"].iloc[-1],
                    "exactly_incremental": bool((c["max_gap"] == 0).all()), "cells": int(c["cells"].max())})
    return pd.DataFrame(out)
