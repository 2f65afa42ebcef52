"""All report figures (matplotlib ``Figure`` objects rendered by Agg, PNG at 150 dpi; pyplot is not used, so
importing this module never changes the caller's matplotlib backend).

Each ``plot_*`` function takes the prepared data from :mod:`imprint_bench.report.tables` (or a
:class:`CDResult`) and returns the ``Figure``; :func:`save_figure` writes it. None of them reads the results
table itself.
"""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from imprint_bench.imprint.registry import GEN, stage_color
from imprint_bench.report import paper
from imprint_bench.report.data import gen_name
from imprint_bench.report.render import p_phrase
from imprint_bench.report.stats import EXACT_SPEARMAN_MAX_N, CDResult
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


def gen_color(gen: str) -> str:
    """A GEN method's colour: its registry entry's (an external function gets a stable fallback colour)."""
    return stage_color("gen", gen)


def gen_legend(gen: str) -> str:
    """Legend name: the report's GEN name, with k spelled out where a method has one fixed k (no k axis)."""
    fixed = GEN.get(gen).fixed_k if gen in GEN else None
    return {1: f"{gen_name(gen)} (k=1)", -1: f"{gen_name(gen)} samples"}.get(fixed, gen_name(gen))


#: Legend entries of the paper's values: Table-1 diamonds, the k-means curve of the k-sweep panels.
PAPER_LABEL = "paper (Table 1)"
PAPER_K_CURVE_LABEL = "paper k-means (Fig. 11b)"
CHAR_WIDTH = 0.55  # average glyph width as a fraction of the font size, to turn inches into characters


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG (150 dpi, tight, white background) and return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    return path


def wrap_title(text: str, width: int) -> str:
    """Wrap each line of ``text`` at spaces outside parentheses, so a "(…)" phrase stays on one line.

    A phrase longer than ``width`` on its own is wrapped inside at word boundaries; runs of spaces become one.
    """
    return "\n".join(_wrap_line(line, width) for line in text.split("\n"))


def _wrap_line(line: str, width: int) -> str:
    lines: list[str] = []
    current = ""
    for chunk in _top_level_chunks(line):
        if len(chunk) > width:  # too long to keep whole: its words wrap like plain text
            pieces = textwrap.wrap(chunk, width, break_long_words=False, break_on_hyphens=False)
        else:
            pieces = [chunk]
        for piece in pieces:
            if current and len(current) + 1 + len(piece) > width:
                lines.append(current)
                current = piece
            else:
                current = f"{current} {piece}" if current else piece
    return "\n".join([*lines, current])


def _top_level_chunks(line: str) -> list[str]:
    """Words of ``line``, with the words of each parenthesised phrase joined into one chunk."""
    chunks: list[str] = []
    depth = 0
    for word in re.split(r"\s+", line.strip()):
        if depth > 0:
            chunks[-1] += " " + word
        else:
            chunks.append(word)
        depth = max(0, depth + word.count("(") - word.count(")"))
    return [c for c in chunks if c]


def _chars_per_line(width_in: float, fontsize: float) -> int:
    return max(20, int(width_in * 72 / (CHAR_WIDTH * fontsize)))


def _suptitle(fig: Figure, text: str) -> None:
    """Figure title wrapped to the figure's width (see :func:`wrap_title`)."""
    size = matplotlib.rcParams["figure.titlesize"]
    fig.suptitle(wrap_title(text, _chars_per_line(fig.get_figwidth(), size)))


def _axes_title(ax: Axes, text: str, **kwargs: object) -> None:
    """Panel title wrapped to the panel's width (see :func:`wrap_title`)."""
    size = float(kwargs.get("fontsize", matplotlib.rcParams["axes.titlesize"]))
    spec = ax.get_subplotspec()  # a panel of a grid may use its column's width (tight_layout widens it)
    share = 1 / spec.get_gridspec().ncols if spec is not None else ax.get_position().width
    width_in = share * ax.get_figure().get_figwidth()
    ax.set_title(wrap_title(text, _chars_per_line(width_in, size)), **kwargs)


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
CD_ROW_IN = 0.26  # height of one label row of the CD diagram (inches); its labels are 9 pt
CD_LABEL_GID = "cd_label"  # gid of the method labels (suffix _left or _right), for tests and SVG output
CD_BAR_GID = "cd_bar"  # gid of the bars joining methods that are not significantly different


def plot_cd(cd: CDResult, title: str = "Critical-difference diagram") -> Figure:
    """CD diagram (Demšar 2006): average ranks on a top axis, each method's label on its own row joined to its
    rank by an elbow line, and bars joining methods that are not significantly different.

    Tied methods share one rank position and stay on the same side, each label on its own row.
    """
    ranks = cd.ranks.sort_values(kind="stable")
    names, values = [str(n) for n in ranks.index], ranks.to_numpy(float)
    lo, hi = 1, max(len(names), 2)
    split = _cd_split(values)
    left = list(range(split))  # best first, top to bottom
    right = list(range(len(names) - 1, split - 1, -1))  # worst first: elbows never cross
    bars = _cd_bars(names, values, cd.significance())
    bar_pad = 0.02 * (hi - lo)
    bar_levels = _stack_intervals([(a - bar_pad, b + bar_pad) for a, b in bars])
    n_levels = max(bar_levels, default=-1) + 1
    first_row = -0.6 - 0.45 * n_levels - 0.5
    bottom = first_row - max(len(left), len(right)) + 0.4
    left_text = [f"{names[i]} ({values[i]:.2f})" for i in left]
    right_text = [f"({values[i]:.2f}) {names[i]}" for i in right]
    margin_in = [0.3 + 9 / 72 * CHAR_WIDTH * max(map(len, t), default=0) for t in (left_text, right_text)]
    plot_in, axes_in = 5.0, -bottom * CD_ROW_IN
    width_in = margin_in[0] + plot_in + margin_in[1]
    fr = cd.friedman
    verdict = "Wilcoxon–Holm" if cd.posthoc_valid else "no post-hoc (Friedman not significant): all joined"
    test = f"Friedman {p_phrase(fr.pvalue)}" if np.isfinite(fr.pvalue) else "Friedman test not applicable"
    heading = wrap_title(
        f"{title}\naverage rank over {cd.n_blocks} blocks (1 = best); {test}; bars: {verdict}, α = {cd.alpha}",
        _chars_per_line(width_in, 9),
    )
    top_in = 0.45 + 0.16 * (heading.count("\n") + 1)
    with matplotlib.rc_context(STYLE | {"axes.grid": False}):
        fig = Figure(figsize=(width_in, axes_in + top_in + 0.1))
        ax = fig.add_axes((margin_in[0] / width_in, 0.1 / fig.get_figheight(), plot_in / width_in,
                           axes_in / fig.get_figheight()))
        span = 0.05 * (hi - lo)
        x_left, x_right = lo - span, hi + span
        ax.set_xlim(x_left, x_right)
        ax.set_ylim(bottom, 0)
        for side, rows, texts, x_end, align, offset in (
            ("left", left, left_text, x_left, "right", -4),
            ("right", right, right_text, x_right, "left", 4),
        ):
            for row, (i, text) in enumerate(zip(rows, texts, strict=True)):
                y = first_row - row
                ax.plot([x_end, values[i], values[i]], [y, y, 0], color="0.3", lw=1, clip_on=False)
                label = ax.annotate(text, (x_end, y), xytext=(offset, 0), textcoords="offset points",
                                    ha=align, va="center", fontsize=9, annotation_clip=False)
                label.set_gid(f"{CD_LABEL_GID}_{side}")
        for (a, b), level in zip(bars, bar_levels, strict=True):
            y = -0.6 - 0.45 * level
            ax.plot([a - bar_pad, b + bar_pad], [y, y], color="0.1", lw=2.5, solid_capstyle="butt", zorder=3,
                    gid=CD_BAR_GID)
        ax.scatter(np.unique(values), np.zeros(len(np.unique(values))), s=25, color="0.1", zorder=4, clip_on=False)
        ax.xaxis.set_ticks_position("top")
        ax.set_xticks(range(lo, hi + 1))
        ax.yaxis.set_visible(False)
        for spine in ("left", "right", "bottom"):
            ax.spines[spine].set_visible(False)
        ax.spines["top"].set_visible(True)
        ax.set_title(heading, fontsize=9, pad=8)
    return fig


def _cd_split(values: np.ndarray) -> int:
    """How many methods (best first) get labels on the left: the change of rank nearest to half, rounded up,
    so that tied methods are never split between the sides."""
    half = (len(values) + 1) // 2
    cuts = [i for i in range(1, len(values)) if values[i] != values[i - 1]] or [len(values)]
    return min(cuts, key=lambda i: (abs(i - half), -i))


def _cd_bars(names: list[str], values: np.ndarray, significant: pd.DataFrame) -> list[tuple[float, float]]:
    """Rank intervals of the maximal runs (in rank order) of methods with no significant pair among them."""
    bars: list[tuple[float, float]] = []
    reach = 0
    for start in range(len(names)):
        end = start
        while end + 1 < len(names) and not any(
            significant.loc[names[i], names[end + 1]] for i in range(start, end + 1)
        ):
            end += 1
        if end > start and end > reach:  # a run inside an earlier one adds no bar
            bars.append((float(values[start]), float(values[end])))
        reach = max(reach, end)
    return bars


def _stack_intervals(intervals: list[tuple[float, float]]) -> list[int]:
    """A level per interval so that intervals on one level do not touch (first level that fits)."""
    placed: list[list[tuple[float, float]]] = []
    levels = []
    for low, high in intervals:
        for level, taken in enumerate(placed):
            if not any(low <= b and a <= high for a, b in taken):
                taken.append((low, high))
                levels.append(level)
                break
        else:
            placed.append([(low, high)])
            levels.append(len(placed) - 1)
    return levels


# --------------------------------------------------------------------------------------------- Table 1 bars
def plot_table1(t1: pd.DataFrame) -> Figure:
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
        has_paper = np.isfinite(paper_vals)
        if has_paper.any():
            ax.scatter(
                paper_vals[has_paper], y[has_paper], marker="D", s=40, color="#dd8452", zorder=3, label=PAPER_LABEL
            )
        for yi, v, e in zip(y, acc, err, strict=True):
            ax.annotate(f"{v:.2f}", (v + e, yi), xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)
        ax.set_yticks(y)
        ax.set_yticklabels(t1["method"])
        lo = np.nanmin(np.r_[acc - err, paper_vals])
        hi = np.nanmax(np.r_[acc + err, paper_vals])
        pad = max(1.0, 0.08 * (hi - lo))
        # the right edge leaves room for the error bars and value labels of the best methods, even near 100 %
        ax.set_xlim(max(0.0, lo - pad), hi + 2.5 * pad)
        ax.set_ylim(-0.6, len(t1) - 0.4)
        ax.set_xlabel("average accuracy (%): mean over groups of the median over seeds")
        _axes_title(ax, "Table 1 methods")
        ax.legend(loc="best", frameon=True, framealpha=0.9, edgecolor="0.85")
    return fig


# --------------------------------------------------------------------------------------------- k sweep
def plot_k_sweep(data: pd.DataFrame, norms: tuple, show_paper: bool = False) -> Figure:
    """Accuracy vs number of proxies k per backbone × dataset; ``all`` dashed, ``mean`` a marker at k=1."""
    keys = sorted({(b, d) for b, d in zip(data["backbone"], data["dataset"], strict=True)})
    with matplotlib.rc_context(STYLE):
        fig, axes = _panel_grid(keys)
        for key, ax in axes.items():
            panel = data[(data["backbone"] == key[0]) & (data["dataset"] == key[1])]
            _k_panel(ax, panel, show_paper and (norms == ("l2", "l2", "l2")), key)
            _axes_title(ax, f"{key[0]} · {key[1]} ({panel['scope'].iloc[0]})")
        _shared_legend(fig, list(axes.values()))
        _suptitle(fig, f"Accuracy vs number of proxies k (NORM {_norms_text(norms)}, AGG max; median over seeds)")
        fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    return fig


def _k_panel(ax: Axes, panel: pd.DataFrame, overlay: bool, key: tuple[str, str]) -> None:
    ks = list(panel.loc[panel["k"] > 0, "k"])
    for gen, g in panel.groupby("gen"):
        color, name = gen_color(gen), gen_legend(gen)
        auto = g[g["k"] == 0]  # gen.k=auto: k chosen per class, no point of the k axis
        if len(auto):
            ax.axhline(auto["acc"].iloc[0], ls=":", color=color or "0.4", lw=1.3, label=f"{name} (k=auto)")
        g = g[g["k"] != 0].sort_values("k")
        if g.empty:
            continue
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
        elif (g["k"] > 0).any():
            g = g[g["k"] > 0]
            ax.plot(g["k"], g["acc"], marker="o", ms=3.5, lw=1.5, color=color, label=name)
    ref = paper.lookup(paper.KMEANS_K_CURVES, *key) if overlay and panel["scope"].iloc[0] == "task all" else None
    if ref is not None:
        ax.plot(range(1, len(ref) + 1), ref, ls=":", color="0.35", lw=1.3, label=PAPER_K_CURVE_LABEL)
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
def plot_few_shot(data: pd.DataFrame, norms: tuple) -> Figure:
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
            _axes_title(ax, f"{key[0]} · {key[1]} ({panel['scope'].iloc[0]})")
        _shared_legend(fig, list(axes.values()))
        _suptitle(
            fig,
            f"Few-shot: accuracy vs samples per class (NORM {_norms_text(norms)}, AGG max; "
            "median over seeds ± 1.96·std/√n)",
        )
        fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    return fig


# --------------------------------------------------------------------------------------------- d in 1
def plot_d_in_1(data: pd.DataFrame, norms: tuple) -> Figure:
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
            _axes_title(ax, f"{key[0]} · {key[1]}")
        _shared_legend(fig, flat)
        _suptitle(fig, f'"d in 1" tasks: accuracy vs k (k-means, NORM {_norms_text(norms)}, max; ★ = k at d)')
        fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    return fig


# --------------------------------------------------------------------------------------------- NC1 vs gain
def plot_nc_gain(points: pd.DataFrame, fits: dict[str, dict[str, float]]) -> Figure:
    """Paper Fig. 12: accuracy gain of k-means k=5 over k=1 vs NC1 (log x), one panel per NC1 column of ``fits``
    (see :func:`imprint_bench.report.stats.nc_gain_fit`). The legend lists only families and backbones drawn.
    """
    cols = list(fits)
    drawn = points[np.logical_or.reduce([points[c] > 0 for c in cols])] if cols else points.iloc[:0]
    families = sorted(drawn["family"].unique())
    backbones = sorted(drawn["backbone"].unique())
    markers = {b: "osD^vP*Xh<>"[i % 11] for i, b in enumerate(backbones)}
    colors = {f: matplotlib.colormaps["tab10"](i % 10) for i, f in enumerate(families)}
    with matplotlib.rc_context(STYLE):
        fig, flat = _grid(len(cols), 2, 5.0, 3.8)
        for col, ax in zip(cols, flat, strict=True):
            for (fam, bb), g in drawn[drawn[col] > 0].groupby(["family", "backbone"]):
                ax.scatter(g[col], g["gain"], color=colors[fam], marker=markers[bb], s=28, alpha=0.85, lw=0)
            fit = fits[col]
            if np.isfinite(fit["slope"]):
                xs = np.geomspace(points.loc[points[col] > 0, col].min(), points[col].max(), 50)
                ax.plot(xs, fit["intercept"] + fit["slope"] * np.log10(xs), color="0.3", lw=1)
                ax.text(0.02, 0.97, _fit_text(fit), transform=ax.transAxes, va="top", fontsize=8)
            ax.axvline(1.0, ls="--", color="0.5", lw=1)
            ax.axhline(0.0, color="0.7", lw=0.8)
            ax.set_xscale("log")
            ax.set_xlabel("NC1 (textbook)" if col == "nc1" else "NC1 (reference centring, as the paper)")
            ax.set_ylabel("accuracy gain k=5 over k=1 (pp)")
        handles = [Line2D([], [], ls="", marker="o", color=colors[f], label=f) for f in families]
        handles += [Line2D([], [], ls="", marker=markers[b], color="0.3", label=b) for b in backbones]
        if handles:
            fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), bbox_to_anchor=(0.5, 0.0))
        _suptitle(fig, "Multi-proxy gain vs neural collapse (paper Fig. 12; dashed: NC1 = 1)")
        fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    return fig


def _fit_text(fit: dict[str, float]) -> str:
    """Spearman ρ with an honest p (exact for few points, never "p = 0") and the fit's R²."""
    exact = "exact " if fit["n"] <= EXACT_SPEARMAN_MAX_N else ""
    return (
        f"Spearman ρ = {fit['rho']:.3f} ({exact}{p_phrase(fit['p'])}, n = {fit['n']})\n"
        f"R² (log10 NC1) = {fit['r2']:.2f}"
    )


def plot_incremental(curves: pd.DataFrame) -> Figure:
    """Accuracy on the classes seen so far against the step, per method (solid), with joint imprinting of the same
    classes (dashed, same colour); one panel per backbone / dataset."""
    with matplotlib.rc_context(STYLE):
        panels = list(curves.groupby(["backbone", "dataset"], sort=False))
        fig, axes = _grid(len(panels), max_cols=3, w=4.2, h=3.2)
        colors = matplotlib.colormaps["tab10"]
        labels = list(dict.fromkeys(curves["label"]))
        for ax, ((backbone, dataset), panel) in zip(axes, panels, strict=False):
            for i, label in enumerate(labels):
                line = panel[panel["label"] == label].sort_values("step")
                if line.empty:
                    continue
                color = colors(i % 10)
                ax.plot(line["n_seen_classes"], line["acc"], marker="o", ms=3, color=color, label=label)
                ax.plot(line["n_seen_classes"], line["joint_acc"], ls="--", lw=1, color=color)
            _axes_title(ax, f"{backbone} / {dataset}")
            ax.set_xlabel("classes seen (step by step)")
            ax.set_ylabel("accuracy on the seen classes, %")
        handles = [Line2D([], [], color=colors(i % 10), marker="o", ms=3, label=label)
                   for i, label in enumerate(labels)]
        handles.append(Line2D([], [], color="grey", ls="--", lw=1, label="joint imprinting (same classes)"))
        fig.legend(handles=handles, loc="lower center", ncol=min(3, len(handles)), fontsize=8, frameon=False,
                   bbox_to_anchor=(0.5, -0.02))
        fig.tight_layout(rect=(0, 0.08 + 0.03 * (len(handles) // 3), 1, 1))
        return fig
