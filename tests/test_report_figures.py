"""Every report figure as a matplotlib Figure: legends match the data drawn, no "p = 0", readable CD labels for
tied ranks, titles wrapped outside parentheses, and the paper's Table-1 values drawn as diamonds."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.text import Text

from imprint_bench.report import build_report, paper, plots, stats, tables
from imprint_bench.report.data import add_config_labels, ok_rows, separate_feature_sets, validate_results
from imprint_bench.report.render import p_phrase
from imprint_bench.report.synthetic import synthetic_results

FIGURE_NAMES = {"table1", "cd_table1", "cd_agg", "cd_selected_gen", "k_sweep", "few_shot", "d_in_1", "nc1_gain"}
PRINTED_P = re.compile(r"\bp\s*=\s*(\d+(?:\.\d+)?(?:e[+-]?\d+)?)")


def _build_keeping_figures(df: pd.DataFrame, out: Path, **kwargs: object) -> dict[str, Figure]:
    """Build a report and return every Figure it saved, by file stem."""
    figures: dict[str, Figure] = {}
    save = plots.save_figure

    def keep(fig: Figure, path: Path) -> Path:
        figures[path.stem] = fig
        return save(fig, path)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots, "save_figure", keep)
        build_report(df, out, strict=True, **kwargs)
    return figures


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    return synthetic_results(small=True, n_seeds=2)


@pytest.fixture(scope="module")
def report(synthetic: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Figure], Path]:
    """The small synthetic report with the paper's values shown: its figures and output folder."""
    out = tmp_path_factory.mktemp("report")
    return _build_keeping_figures(synthetic, out, paper="yes"), out


@pytest.fixture(scope="module")
def ok(synthetic: pd.DataFrame) -> pd.DataFrame:
    """The successful, labelled rows, as the report sees them."""
    return add_config_labels(ok_rows(separate_feature_sets(validate_results(synthetic))[0]))


def _legend_labels(fig: Figure) -> set[str]:
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes)]
    return {t.get_text() for leg in legends if leg is not None for t in leg.get_texts()}


def _cd_labels(fig: Figure) -> list[Text]:
    return [t for t in fig.findobj(Text) if str(t.get_gid()).startswith(plots.CD_LABEL_GID)]


def _cd_entries(fig: Figure) -> list[tuple[str, str, str]]:
    """(method, rank, side) of every CD label: "name (1.50)" on the left, "(1.50) name" on the right."""
    entries = []
    for label in _cd_labels(fig):
        side = label.get_gid().rsplit("_", 1)[1]
        pattern = r"(?P<name>.+) \((?P<rank>\d+\.\d\d)\)" if side == "left" else r"\((?P<rank>\d+\.\d\d)\) (?P<name>.+)"
        match = re.fullmatch(pattern, label.get_text())
        assert match, label.get_text()
        entries.append((match["name"], match["rank"], side))
    return entries


def _rendered(fig: Figure) -> RendererAgg:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _assert_no_overlap(texts: list[Text], renderer: RendererAgg) -> None:
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        assert not box_a.overlaps(box_b), f"labels {a!r} and {b!r} overlap"


def test_the_report_makes_every_figure(report):
    figures, _ = report
    assert set(figures) == FIGURE_NAMES


def test_no_figure_prints_p_equal_to_zero(report):
    figures, _ = report
    printed = [
        (name, t.get_text())
        for name, fig in figures.items()
        for t in fig.findobj(Text)
        if PRINTED_P.search(t.get_text())
    ]
    assert printed  # the CD diagrams and NC1 panels print p-values
    for name, text in printed:
        for value in PRINTED_P.findall(text):
            assert float(value) > 0, f"{name}: {text!r}"


def test_legends_list_exactly_the_series_in_the_data(report, ok):
    figures, _ = report
    k_data, _ = tables.k_sweep_data(ok)
    assert _legend_labels(figures["k_sweep"]) == {plots.gen_legend(g) for g in k_data["gen"]} | {
        plots.PAPER_K_CURVE_LABEL  # resnet18 × MNIST / CIFAR-10 task all: the paper has those curves
    }
    few, _ = tables.few_shot_data(ok)
    assert _legend_labels(figures["few_shot"]) == set(few["line"])
    d1, _ = tables.d_in_1_data(ok)
    assert _legend_labels(figures["d_in_1"]) == {f"d={d}" for d in d1["d"]}
    points = tables.nc_gain_data(ok)
    assert _legend_labels(figures["nc1_gain"]) == set(points["family"]) | set(points["backbone"])
    assert _legend_labels(figures["table1"]) == {"this run: mean over groups ± 1.96·stderr", plots.PAPER_LABEL}


def test_figure_labels_name_the_methods_of_the_tables(report):
    figures, out = report
    t1 = pd.read_csv(out / "tables" / "table1.csv")
    shown = [t.get_text() for t in figures["table1"].axes[0].get_yticklabels()]
    assert shown == list(t1["method"])[::-1]  # first method on top
    ranks = pd.read_csv(out / "tables" / "ranks_table1.csv")
    drawn = sorted((method, rank) for method, rank, _ in _cd_entries(figures["cd_table1"]))
    assert drawn == sorted((m, f"{r:.2f}") for m, r in zip(ranks["method"], ranks["avg_rank"], strict=True))


def test_table1_diamonds_are_the_paper_values_and_the_caption_says_so(report, synthetic, tmp_path):
    figures, out = report
    diamonds = [c for c in figures["table1"].axes[0].collections if c.get_label() == plots.PAPER_LABEL]
    assert len(diamonds) == 1 and isinstance(diamonds[0], PathCollection)
    t1 = pd.read_csv(out / "tables" / "table1.csv")
    assert sorted(diamonds[0].get_offsets()[:, 0]) == pytest.approx(sorted(paper.TABLE1_ACC[m] for m in t1["label"]))
    assert "diamonds: paper values" in (out / "report.md").read_text()

    presets_only = synthetic[synthetic["experiment"] == "table1"]
    without = _build_keeping_figures(presets_only, tmp_path, paper="no")
    assert not any(c.get_label() == plots.PAPER_LABEL for c in without["table1"].axes[0].collections)
    assert "diamonds" not in (tmp_path / "report.md").read_text()


def test_report_cd_diagrams_have_readable_labels(report):
    figures, _ = report
    for name in ("cd_table1", "cd_agg", "cd_selected_gen"):
        fig = figures[name]
        _assert_no_overlap(_cd_labels(fig), _rendered(fig))


def _tied_cd() -> stats.CDResult:
    """Groups of three and four tied methods (identical scores within a group), the first better in every block.

    Half of the seven labels would go left, which would cut the second group in two.
    """
    base = np.random.default_rng(0).uniform(60, 90, 30)
    names = ["max", "1-NN (euclidean)", "k-means k=20 [ours]", "mean [qi]"]
    good = {f"{n} A": base + 5 for n in names[:3]}
    poor = {f"{n} B": base.copy() for n in names}
    return stats.cd_analysis(pd.DataFrame({**good, **poor}))


def test_cd_labels_for_tied_ranks_are_all_shown_apart_and_ties_stay_on_one_side():
    cd = _tied_cd()
    assert cd.ranks.nunique() == 2 and cd.posthoc_valid
    fig = plots.plot_cd(cd, "tied ranks")
    entries = _cd_entries(fig)
    assert sorted(name for name, _, _ in entries) == sorted(cd.methods)  # every method once
    _assert_no_overlap(_cd_labels(fig), _rendered(fig))
    sides_of_rank: dict[str, set[str]] = {}
    for _, rank, side in entries:
        sides_of_rank.setdefault(rank, set()).add(side)
    assert all(len(sides) == 1 for sides in sides_of_rank.values()), sides_of_rank
    bars = [line for line in fig.axes[0].lines if line.get_gid() == plots.CD_BAR_GID]
    assert len(bars) == 2  # each tie group joined (p = 1), the groups apart (A wins every block)
    assert all(np.ptp(bar.get_xdata()) > 0 for bar in bars)  # a bar over tied ranks is still visible


def test_nc_gain_panel_with_few_points_and_a_backbone_without_nc1():
    points = pd.DataFrame(
        {
            "family": ["MNIST"] * 3 + ["CIFAR-10"],
            "backbone": ["resnet18"] * 3 + ["vit_b_16"],
            "dataset": ["MNIST"] * 3 + ["CIFAR-10"],
            "mapping": "none",
            "task": ["all", "even", "odd", "all"],
            "gain": [1.0, 2.0, 4.0, 3.0],
            "acc_k1": 80.0,
            "nc1": [0.5, 1.0, 2.0, np.nan],
            "nc1_ref": [0.7, 1.4, 2.8, np.nan],
        }
    )
    gain = points["gain"].to_numpy(float)
    fits = {c: stats.nc_gain_fit(points[c].to_numpy(float), gain) for c in ("nc1", "nc1_ref")}
    assert fits["nc1"]["rho"] == pytest.approx(1.0) and fits["nc1"]["p"] == pytest.approx(1 / 3)  # 2 of 3! orders
    fig = plots.plot_nc_gain(points, fits)
    assert _legend_labels(fig) == {"MNIST", "resnet18"}  # vit_b_16 / CIFAR-10 has no NC1: not drawn, not listed
    texts = [t.get_text() for t in fig.findobj(Text)]
    fit_texts = [t for t in texts if t.startswith("Spearman")]
    assert len(fit_texts) == 2
    assert all("exact p = 0.333, n = 3" in t for t in fit_texts)
    assert not any(re.search(r"p = 0(?![.\d])", t) for t in texts)


def test_spearman_p_of_a_perfect_correlation_is_exact_for_few_points_and_never_printed_as_zero():
    for n in (3, stats.EXACT_SPEARMAN_MAX_N, stats.EXACT_SPEARMAN_MAX_N + 1, 40):
        x = np.arange(1.0, n + 1)
        rho, p = stats.spearman(x, x**2)
        assert rho == pytest.approx(1.0)
        if n <= stats.EXACT_SPEARMAN_MAX_N:
            assert p == pytest.approx(2 / math.factorial(n))  # the two perfect orderings of n!
        assert p_phrase(p) in ("p < 0.001", f"p = {p:.3f}") and p_phrase(p) != "p = 0.000"
    assert p_phrase(0.0) == "p < 0.001" and p_phrase(float("nan")) == "no p-value"


def test_titles_wrap_outside_parentheses(report):
    figures, _ = report
    titles = [fig.get_suptitle() for fig in figures.values()]
    titles += [ax.get_title() for fig in figures.values() for ax in fig.axes]
    wrapped = [t for t in titles if "\n" in t]
    assert wrapped  # the few-shot title and the CD headings are long
    for title in titles:
        for line in title.split("\n"):
            assert line.count("(") == line.count(")"), title


def test_wrap_title_keeps_parenthesised_phrases_whole():
    text = "Few-shot: accuracy vs samples per class (NORM L2/L2/L2, AGG max; median over seeds ± 1.96·std/√n)"
    assert plots.wrap_title(text, 60) == (
        "Few-shot: accuracy vs samples per class\n(NORM L2/L2/L2, AGG max; median over seeds ± 1.96·std/√n)"
    )
    assert plots.wrap_title("a  (b c)   d", 80) == "a (b c) d"
    long_phrase = plots.wrap_title("title (" + "word " * 20 + "end)", 30)
    assert all(len(line) <= 30 for line in long_phrase.split("\n"))  # too long to keep whole: wrapped inside
    assert plots.wrap_title("first line\nsecond (kept) line", 12) == "first line\nsecond\n(kept) line"


def test_every_stage_name_of_the_engine_has_a_display_name_and_colour():
    from imprint_bench.imprint.registry import GEN, NORM, norm_names
    from imprint_bench.report.data import gen_name, norm_label
    from imprint_bench.report.plots import gen_color, gen_legend

    colours = {gen_color(stage.name) for stage in GEN}
    assert len(colours) == len(GEN.names()) and all(gen_legend(stage.name) for stage in GEN)
    assert gen_name("kmeans") == "k-means" and gen_name("cov_max") == "k-cov-max"
    assert gen_legend("mean") == "mean (k=1)" and gen_legend("all") == "all samples"
    assert all(norm_label(n.name) for n in NORM)
    assert {norm_label(n) for n in norm_names("pre")} == {"none", "L2", "CL2N"}


def test_table1_figure_never_clips_the_best_methods_error_bars_or_labels():
    t1 = pd.DataFrame({"method": ["qi", "oracle"], "avg_acc": [90.0, 99.6], "stderr": [0.5, 0.45],
                       "paper_acc": [np.nan, 99.0]})
    fig = plots.plot_table1(t1)
    ax = fig.axes[0]
    fig.canvas.draw()
    right = ax.get_xlim()[1]
    assert right > 99.6 + 1.96 * 0.45  # past 100 when the bar needs it
    box = ax.get_window_extent()
    for text in ax.texts:  # the value labels end inside the axes
        assert text.get_window_extent().x1 <= box.x1 + 1, text.get_text()
