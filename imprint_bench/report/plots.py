"""All report figures (matplotlib ``Figure`` objects rendered by Agg, PNG at 150 dpi; pyplot is not used, so
importing this module never changes the caller's matplotlib backend).

Each function takes the prepared data from :mod:`imprint_bench.report.tables` (or a :class:`CDResult`),
writes one PNG and returns its path. None of them reads the results table itself.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy import stats as sps

from imprint_bench.report import paper
from imprint_bench.report.stats import CDResult
from imprint_bench.report.tables import few_shot_line_order

DPI = 150
STYLE = {
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linestyle": "-",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "figure.titlesize": 12,
}
GEN_COLORS = {
    "kmeans": "#1f77b4",
    "kmedoids": "#ff7f0e",
    "random": "#2ca02c",
    "fps": "#d62728",
    "cov_max": "#9467bd",
    "kls": "#8c564b",
    "mean": "#e377c2",
    "all": "#7f7f7f",
    "ls": "#17becf",
    "none": "#bcbd22",
}
GEN_NAMES = {
    "kmeans": "k-means",
    "kmedoids": "k-medoids",
    "random": "k-random",
    "fps": "k-fps",
    "cov_max": "k-cov-max",
    "kls": "k-LS",
    "mean": "mean (k=1)",
    "all": "all samples",
    "ls": "least squares",
    "none": "random init",
}


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    return path


def _suptitle(fig: Figure, text: str) -> None:
    """Figure title wrapped to the figure's width."""
    fig.suptitle(textwrap.fill(text, width=max(40, int(fig.get_figwidth() * 12))))


def _grid(n: int, max_cols: int = 4, w: float = 3.6, h: float = 2.9) -> tuple[Figure, list[Axes]]:
    """A figure with n panels in rows of at most ``max_cols``; unused panels hidden."""
    cols = max(1, min(max_cols, n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(w * cols, h * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _panel_grid(
    keys: list[tuple[str, str]], w: float = 3.6, h: float = 2.9
) -> tuple[Figure, dict[tuple[str, str], Axes]]:
    """Rows = backbones, columns = datasets when that grid is small and complete-ish; else a flat grid."""
    bbs = sorted({k[0] for k in keys})
    dss = sorted({k[1] for k in keys})
    if len(bbs) * len(dss) <= 1.5 * len(keys) and len(dss) <= 5:
        fig = Figure(figsize=(w * len(dss), h * len(bbs) + 0.6))
        axes = fig.subplots(len(bbs), len(dss), squeeze=False)
        out = {}
        for i, bb in enumerate(bbs):
            for j, ds in enumerate(dss):
                if (bb, ds) in keys:
                    out[(bb, ds)] = axes[i][j]
                else:
                    axes[i][j].set_visible(False)
        return fig, out
    fig, flat = _grid(len(keys), 4, w, h)
    return fig, dict(zip(keys, flat, strict=True))


def _log_k_axis(ax: Axes, ks: list[int]) -> None:
    ks = sorted({int(k) for k in ks if k > 0})
    if len(ks) > 1 and ks[-1] / ks[0] >= 8:
        ax.set_xscale("log")
        ticks = [k for k in ks if k in (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000)] or ks
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks])
        ax.minorticks_off()


def _norms_text(norms: tuple) -> str:
    names = {"l2": "L2", "none": "none", "quantile": "quantile", "cl2n": "CL2N"}
    return "/".join(names.get(str(n), str(n)) for n in norms)


# --------------------------------------------------------------------------------------------- CD diagram
def plot_cd(cd: CDResult, path: Path, title: str = "Critical-difference diagram") -> Path:
    """CD diagram (scikit-posthocs): average ranks, bars join methods not significantly different."""
    import scikit_posthocs as sp

    sig = cd.significance()
    pmat = pd.DataFrame(np.where(sig.to_numpy(), 0.0, 1.0), index=sig.index, columns=sig.columns)
    k = len(cd.methods)
    with matplotlib.rc_context(STYLE | {"axes.grid": False}):
        fig = Figure(figsize=(7.5, 1.4 + 0.32 * k))
        ax = fig.subplots()
        sp.critical_difference_diagram(
            cd.ranks,
            pmat,
            ax=ax,
            alpha=0.5,
            label_fmt_left="{label} ({rank:.2f})",
            label_fmt_right="({rank:.2f}) {label}",
            label_props={"fontsize": 9},
            crossbar_props={"color": "0.15", "linewidth": 2.5, "alpha": 0.9},
            marker_props={"s": 25},
        )
        lo, hi = 1, max(k, 2)
        ax.set_xlim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
        ax.set_xticks(range(lo, hi + 1))
        fr = cd.friedman
        sub = f"Friedman p = {fr.pvalue:.3g}" if np.isfinite(fr.pvalue) else "Friedman test not applicable"
        verdict = "Wilcoxon–Holm" if cd.posthoc_valid else "no post-hoc (Friedman not significant): all joined"
        ax.set_title(
            f"{title}\naverage rank over {cd.n_blocks} blocks (1 = best); {sub}; bars: {verdict}, α = {cd.alpha}",
            fontsize=9,
            pad=22,
        )
        return _save(fig, path)


# --------------------------------------------------------------------------------------------- Table 1 bars
def plot_table1(t1: pd.DataFrame, path: Path) -> Path:
    """Dot plot of average accuracy ±1.96·stderr per method (first method on top), paper values as diamonds."""
    t1 = t1.iloc[::-1].reset_index(drop=True)
    y = np.arange(len(t1))
    acc = t1["avg_acc"].to_numpy(float)
    err = 1.96 * t1["stderr"].fillna(0).to_numpy(float)
    paper_vals = t1["paper_acc"].to_numpy(float) if "paper_acc" in t1 else np.full(len(t1), np.nan)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(7, 1.1 + 0.45 * len(t1)))
        ax = fig.subplots()
        ax.errorbar(
            acc,
            y,
            xerr=err,
            fmt="o",
            color="#4c72b0",
            ms=7,
            capsize=4,
            lw=1.5,
            label="this run: mean over groups ± 1.96·stderr",
        )
        if np.isfinite(paper_vals).any():
            ax.scatter(paper_vals, y, marker="D", s=40, color="#dd8452", zorder=3, label="paper (Table 1)")
        for yi, v, e in zip(y, acc, err, strict=True):
            ax.annotate(f"{v:.2f}", (v + e, yi), xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)
        ax.set_yticks(y)
        ax.set_yticklabels(t1["method"])
        lo = np.nanmin(np.r_[acc - err, paper_vals])
        hi = np.nanmax(np.r_[acc + err, paper_vals])
        pad = max(1.0, 0.08 * (hi - lo))
        ax.set_xlim(max(0.0, lo - pad), min(100.0, hi + 2.5 * pad))
        ax.set_ylim(-0.6, len(t1) - 0.4)
        ax.set_xlabel("average accuracy (%): mean over groups of the median over seeds")
        ax.set_title("Table 1 methods")
        ax.legend(loc="best", frameon=True, framealpha=0.9, edgecolor="0.85")
        return _save(fig, path)


# --------------------------------------------------------------------------------------------- k sweep
def plot_k_sweep(data: pd.DataFrame, path: Path, norms: tuple, show_paper: bool = False) -> Path:
    """Accuracy vs number of proxies k per backbone × dataset; ``all`` dashed, ``mean`` a marker at k=1."""
    keys = sorted({(b, d) for b, d in zip(data["backbone"], data["dataset"], strict=True)})
    with matplotlib.rc_context(STYLE):
        fig, axes = _panel_grid(keys)
        for key, ax in axes.items():
            panel = data[(data["backbone"] == key[0]) & (data["dataset"] == key[1])]
            _k_panel(ax, panel, show_paper and (norms == ("l2", "l2", "l2")), key)
            ax.set_title(f"{key[0]} · {key[1]}  ({panel['scope'].iloc[0]})")
        _shared_legend(fig, list(axes.values()))
        _suptitle(fig, f"Accuracy vs number of proxies k (NORM {_norms_text(norms)}, AGG max; median over seeds)")
        fig.tight_layout(rect=(0, 0.06, 1, 0.97))
        return _save(fig, path)


def _k_panel(ax: Axes, panel: pd.DataFrame, overlay: bool, key: tuple[str, str]) -> None:
    ks = list(panel.loc[panel["k"] > 0, "k"])
    for gen, g in panel.groupby("gen"):
        g = g.sort_values("k")
        color, name = GEN_COLORS.get(gen), GEN_NAMES.get(gen, gen)
        if gen == "all" or (g["k"] == -1).all():
            ax.axhline(g["acc"].iloc[0], ls="--", color=color or "0.4", lw=1.3, label=name)
        elif gen in ("mean", "ls") or len(g) == 1:
            marker = {"mean": "*", "ls": "D"}.get(gen, "o")
            ax.scatter(
                g["k"],
                g["acc"],
                marker=marker,
                s=90 if marker == "*" else 40,
                color=color,
                zorder=4,
                label=name if gen in ("mean", "ls") else f"{name}",
            )
        else:
            g = g[g["k"] > 0]
            ax.plot(g["k"], g["acc"], marker="o", ms=3.5, lw=1.5, color=color, label=name)
    ref = paper.lookup(paper.KMEANS_K_CURVES, *key) if overlay and panel["scope"].iloc[0] == "task all" else None
    if ref is not None:
        ax.plot(range(1, len(ref) + 1), ref, ls=":", color="0.35", lw=1.3, label="paper k-means (Fig. 11b)")
    _log_k_axis(ax, ks + ([1, len(ref)] if ref else []))
    ax.set_xlabel("k (proxies per class)")
    ax.set_ylabel("accuracy (%)")


def _shared_legend(fig: Figure, axes: list[Axes]) -> None:
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if labels:
        fig.legend(
            [handles[lab] for lab in labels],
            labels,
            loc="lower center",
            ncol=min(6, len(labels)),
            bbox_to_anchor=(0.5, 0.0),
        )


# --------------------------------------------------------------------------------------------- few-shot
def plot_few_shot(data: pd.DataFrame, path: Path, norms: tuple) -> Path:
    """Accuracy vs samples per class, one line per k; band = median ± 1.96·std/√n over seeds."""
    keys = sorted({(b, d) for b, d in zip(data["backbone"], data["dataset"], strict=True)})
    lines = sorted(data["line"].unique(), key=few_shot_line_order)
    cmap = matplotlib.colormaps["viridis"]
    colors = {
        ln: ("0.35" if ln.startswith("k=n") else cmap(i / max(1, len(lines) - 1) * 0.85)) for i, ln in enumerate(lines)
    }
    with matplotlib.rc_context(STYLE):
        fig, axes = _panel_grid(keys)
        for key, ax in axes.items():
            panel = data[(data["backbone"] == key[0]) & (data["dataset"] == key[1])]
            for line in lines:
                g = panel[(panel["line"] == line) & (panel["shots"] > 0)].sort_values("n")
                full = panel[(panel["line"] == line) & (panel["shots"] == -1)]
                ls = "--" if line.startswith("k=n") else "-"
                if len(g):
                    ax.plot(g["n"], g["acc"], marker="o", ms=3, ls=ls, color=colors[line], label=line)
                    ax.fill_between(
                        g["n"], g["acc"] - g["ci"], g["acc"] + g["ci"], color=colors[line], alpha=0.18, lw=0
                    )
                if len(full) and full["n"].notna().all():
                    ax.scatter(
                        full["n"],
                        full["acc"],
                        marker="o",
                        facecolors="none",
                        edgecolors=colors[line],
                        s=30,
                        zorder=4,
                    )
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set_xlabel("training samples per class (hollow: full training set)")
            ax.set_ylabel("accuracy (%)")
            ax.set_title(f"{key[0]} · {key[1]}  ({panel['scope'].iloc[0]})")
        _shared_legend(fig, list(axes.values()))
        _suptitle(
            fig,
            f"Few-shot: accuracy vs samples per class (NORM {_norms_text(norms)}, AGG max; "
            "median over seeds ± 1.96·std/√n)",
        )
        fig.tight_layout(rect=(0, 0.06, 1, 0.97))
        return _save(fig, path)


# --------------------------------------------------------------------------------------------- d in 1
def plot_d_in_1(data: pd.DataFrame, path: Path, norms: tuple) -> Path:
    """ImageNet "d in 1": accuracy vs k, one line per d (mean over variants ± 1.96·std/√n), star at k = d."""
    keys = sorted({(b, d) for b, d in zip(data["backbone"], data["dataset"], strict=True)})
    ds = sorted(data["d"].unique())
    cmap = matplotlib.colormaps["viridis"]
    with matplotlib.rc_context(STYLE):
        fig, flat = _grid(len(keys), 4, 4.0, 3.2)
        for key, ax in zip(keys, flat, strict=True):
            panel = data[(data["backbone"] == key[0]) & (data["dataset"] == key[1])]
            for i, d in enumerate(ds):
                g = panel[panel["d"] == d].sort_values("k")
                if g.empty:
                    continue
                c = cmap(i / max(1, len(ds) - 1) * 0.9)
                ax.plot(g["k"], g["acc"], marker="o", ms=2.5, lw=1.3, color=c, label=f"d={d}")
                ax.fill_between(g["k"], g["acc"] - g["ci"], g["acc"] + g["ci"], color=c, alpha=0.15, lw=0)
                at_d = g[g["k"] == d]
                if len(at_d):
                    ax.scatter(
                        at_d["k"],
                        at_d["acc"],
                        marker="*",
                        s=80,
                        color=c,
                        edgecolors="k",
                        linewidths=0.5,
                        zorder=5,
                    )
            ax.set_xlabel("k (proxies per class)")
            ax.set_ylabel("accuracy (%)")
            ax.set_title(f"{key[0]} · {key[1]}")
        _shared_legend(fig, flat)
        _suptitle(fig, f'"d in 1" tasks: accuracy vs k (k-means, NORM {_norms_text(norms)}, max; ★ = k at d)')
        fig.tight_layout(rect=(0, 0.07, 1, 0.95))
        return _save(fig, path)


# --------------------------------------------------------------------------------------------- NC1 vs gain
def nc_fit(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Spearman ρ (p) of NC1 vs gain and the linear fit of gain on log10 NC1 (slope, R²)."""
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y = x[ok], y[ok]
    out = {"n": len(x), "rho": np.nan, "p": np.nan, "slope": np.nan, "intercept": np.nan, "r2": np.nan}
    if len(x) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
        rho, p = sps.spearmanr(x, y)
        fit = sps.linregress(np.log10(x), y)
        out.update(
            rho=float(rho),
            p=float(p),
            slope=float(fit.slope),
            intercept=float(fit.intercept),
            r2=float(fit.rvalue**2),
        )
    return out


def plot_nc_gain(points: pd.DataFrame, path: Path) -> tuple[Path, dict[str, dict[str, float]]]:
    """Paper Fig. 12: accuracy gain of k-means k=5 over k=1 vs NC1 (log x), textbook and reference NC1."""
    cols = [c for c in ("nc1", "nc1_ref") if c in points and (points[c] > 0).sum() >= 1]
    families = sorted(points["family"].unique())
    backbones = sorted(points["backbone"].unique())
    markers = {b: "osD^vP*Xh<>"[i % 11] for i, b in enumerate(backbones)}
    colors = {f: matplotlib.colormaps["tab10"](i % 10) for i, f in enumerate(families)}
    fits = {}
    with matplotlib.rc_context(STYLE):
        fig, flat = _grid(len(cols), 2, 5.0, 3.8)
        for col, ax in zip(cols, flat, strict=True):
            for (fam, bb), g in points.groupby(["family", "backbone"]):
                ax.scatter(
                    g[col],
                    g["gain"],
                    color=colors[fam],
                    marker=markers.get(bb, "o"),
                    s=28,
                    alpha=0.85,
                    edgecolors="none",
                )
            fit = nc_fit(points[col].to_numpy(float), points["gain"].to_numpy(float))
            fits[col] = fit
            if np.isfinite(fit["slope"]):
                xs = np.geomspace(points.loc[points[col] > 0, col].min(), points[col].max(), 50)
                ax.plot(xs, fit["intercept"] + fit["slope"] * np.log10(xs), color="0.3", lw=1)
                ax.text(
                    0.02,
                    0.97,
                    f"Spearman ρ = {fit['rho']:.3f} (p = {fit['p']:.2g})\nR² = {fit['r2']:.2f}, n = {fit['n']}",
                    transform=ax.transAxes,
                    va="top",
                    fontsize=8,
                )
            ax.axvline(1.0, ls="--", color="0.5", lw=1)
            ax.axhline(0.0, color="0.7", lw=0.8)
            ax.set_xscale("log")
            ax.set_xlabel("NC1 (textbook)" if col == "nc1" else "NC1 (reference centring, as the paper)")
            ax.set_ylabel("accuracy gain k=5 over k=1 (pp)")
        handles = [Line2D([], [], ls="", marker="o", color=colors[f], label=f) for f in families]
        handles += [Line2D([], [], ls="", marker=markers[b], color="0.3", label=b) for b in backbones]
        fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), bbox_to_anchor=(0.5, 0.0))
        _suptitle(fig, "Multi-proxy gain vs neural collapse (paper Fig. 12; dashed: NC1 = 1)")
        fig.tight_layout(rect=(0, 0.1, 1, 0.95))
        return _save(fig, path), fits
