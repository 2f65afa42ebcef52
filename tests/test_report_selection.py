"""Model selection in the report: choices on validation accuracy only, the optimism gap, tables without validation
data, rank statistics on the validation choices and the k=auto label."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.lines import Line2D
from test_report import make_results

from imprint_bench.imprint.registry import config_text, gen_label
from imprint_bench.report import build_report, plots, selection, tables
from imprint_bench.report.data import add_config_labels, ok_rows, validate_results
from imprint_bench.report.synthetic import synthetic_results

G1, G2 = ("resnet18", "MNIST", "all"), ("resnet18", "CIFAR-10", "all")
A, B, C = "kmeans:5", "kmeans:2", "mean:1"
LABEL = {A: "L2/k-means(k=5)/L2/L2/max", B: "L2/k-means(k=2)/L2/L2/max", C: "L2/mean/L2/L2/max"}
#: (test acc, val acc) per configuration and group: validation picks B in G1 (test 88 < 90) and A in G2 (70 < 75).
SCORES = {A: {G1: (90, 85), G2: (70, 80)}, B: {G1: (88, 87), G2: (75, 74)}, C: {G1: (80, 70), G2: (72, 73)}}


def _hand_table() -> pd.DataFrame:
    df = make_results({m: {g: [acc] for g, (acc, _) in groups.items()} for m, groups in SCORES.items()}, seeds=(1,))
    val = {(m.split(":")[0], int(m.split(":")[1]), g): v
           for m, groups in SCORES.items() for g, (_, v) in groups.items()}
    df["val_acc"] = [val[(gen, k, (bb, ds, t))] for gen, k, bb, ds, t in
                     zip(df["gen"], df["k"], df["backbone"], df["dataset"], df["task"], strict=True)]
    df["n_val"] = 2000
    return df


def _medians(df: pd.DataFrame) -> pd.DataFrame:
    return tables.seed_medians(add_config_labels(ok_rows(validate_results(df))))


def test_optimism_gap_per_group_and_per_backbone_on_a_hand_made_table():
    med = _medians(_hand_table())
    per_group = selection.selection_table(med, ["backbone", "dataset", "mapping", "task"]).set_index("dataset")
    assert per_group.loc["MNIST", "val_selected"] == LABEL[B] and per_group.loc["MNIST", "test_acc"] == 88
    assert per_group.loc["MNIST", "test_selected"] == LABEL[A] and per_group.loc["MNIST", "test_selected_acc"] == 90
    assert per_group.loc["MNIST", "optimism_gap"] == pytest.approx(2.0)
    assert per_group.loc["CIFAR-10", "val_selected"] == LABEL[A] and per_group.loc["CIFAR-10", "test_acc"] == 70
    assert per_group.loc["CIFAR-10", "optimism_gap"] == pytest.approx(5.0)
    assert selection.gap_summary(per_group) == {"n": 2, "mean_gap": 3.5, "max_gap": 5.0, "agree": 0.0}
    # one configuration for the backbone: validation means A 82.5, B 80.5, C 71.5; test means A 80, B 81.5, C 76
    per_backbone = selection.selection_table(med, ["backbone"]).iloc[0]
    assert per_backbone["val_selected"] == LABEL[A] and per_backbone["val_acc"] == pytest.approx(82.5)
    assert per_backbone["test_acc"] == pytest.approx(80.0)
    assert per_backbone["test_selected"] == LABEL[B] and per_backbone["test_selected_acc"] == pytest.approx(81.5)
    assert per_backbone["optimism_gap"] == pytest.approx(1.5)


def test_the_chooser_refuses_a_frame_with_more_than_one_score():
    med = _medians(_hand_table())
    with pytest.raises(ValueError, match="exactly one score column"):
        selection.choose_best(med[["backbone", "label", "val_acc", "acc"]], ["backbone"])


def _choices(out: Path) -> dict[str, list]:
    """Every choice a report made on validation data, from its CSV tables."""
    read = lambda name: pd.read_csv(out / "tables" / f"{name}.csv")  # noqa: E731
    agg = sorted(out.glob("tables/agg_*.csv"))
    assert agg
    return {
        "per_group": list(read("selection_per_group")["val_selected"]),
        "per_backbone": list(read("selection_per_backbone")["val_selected"]),
        "k": list(read("k_sweep_selection")["k (validation)"]),
        "d_in_1": list(read("d_in_1")["val_best_k"]),
        "table1": list(read("table1")["label"]),
        **{path.stem: list(pd.read_csv(path)["label"]) for path in agg},
    }


def test_choices_on_validation_do_not_change_when_test_accuracies_are_shuffled(tmp_path: Path):
    df = synthetic_results(small=True, n_seeds=2, n_fail=0)
    shuffled = df.assign(acc=np.random.default_rng(1).permutation(df["acc"].to_numpy()))
    build_report(df, tmp_path / "a", best_custom=3, paper="no", strict=True)
    build_report(shuffled, tmp_path / "b", best_custom=3, paper="no", strict=True)
    original, after = _choices(tmp_path / "a"), _choices(tmp_path / "b")
    assert original == after
    # the test-selected optima do follow the test accuracies
    test_picks = [pd.read_csv(tmp_path / x / "tables" / "selection_per_group.csv")["test_selected"] for x in "ab"]
    assert list(test_picks[0]) != list(test_picks[1])


def test_report_with_validation_data_shows_both_choices_and_the_gap(tmp_path: Path):
    md = build_report(_hand_table(), tmp_path, strict=True).read_text()
    assert "## Model selection on validation data" in md and "Protocol:" in md
    assert "optimism gap averages 3.50 points (largest 5.00)" in md
    assert "No validation accuracies" not in md and "selected on test data (optimistic)" not in md
    per_group = pd.read_csv(tmp_path / "tables" / "selection_per_group.csv")
    assert sorted(per_group["optimism_gap"]) == [2.0, 5.0]


def test_rank_statistics_use_the_configurations_chosen_on_validation(tmp_path: Path):
    build_report(_hand_table(), tmp_path, strict=True)
    ranks = pd.read_csv(tmp_path / "tables" / "ranks_selected_gen.csv").set_index("method")
    # k-means tuned on validation: B in MNIST (88), A in CIFAR-10 (70); test-selected it would be 90 and 75
    assert ranks.loc["k-means", "avg_acc"] == pytest.approx((88 + 70) / 2)
    assert ranks.loc["mean", "avg_acc"] == pytest.approx((80 + 72) / 2)
    assert (tmp_path / "figures" / "cd_selected_gen.png").is_file()
    # the best custom configuration of Table 1 is chosen on validation too: A (82.5) over B (80.5)
    build_report(_hand_table(), tmp_path / "one", best_custom=1, strict=True)
    t1 = pd.read_csv(tmp_path / "one" / "tables" / "table1.csv")
    assert list(t1["label"]) == [LABEL[A]] and t1["avg_acc"].iloc[0] == pytest.approx(80.0)


def test_without_validation_data_one_line_says_how_and_tables_are_labelled_test_selected(tmp_path: Path):
    df = synthetic_results(small=True, n_seeds=1, n_fail=0, validation=False)
    md = build_report(df, tmp_path, strict=True).read_text()
    notes = [line for line in md.splitlines() if "No validation accuracies" in line]
    assert len(notes) == 1 and "`task.val_fraction=0.2`" in notes[0]
    assert "ranked on test accuracy: selected on test data (optimistic)" in md  # the AGG study
    assert "best acc (test-selected, optimistic)" in md  # d in 1
    assert not (tmp_path / "tables" / "selection_per_group.csv").exists()
    assert not (tmp_path / "tables" / "k_sweep_selection.csv").exists()
    customs = make_results({A: {G1: [90], G2: [70]}, B: {G1: [88], G2: [75]}}, seeds=(1,))
    text = build_report(customs, tmp_path / "custom", strict=True).read_text()
    assert "best other configurations (by average accuracy over the groups covered by the most configurations: " \
           "selected on test data (optimistic))" in text


def test_rows_without_validation_are_left_out_of_the_choice_and_counted(tmp_path: Path):
    df = _hand_table()
    best_on_test = make_results({"kmeans:9": {G1: [99], G2: [99]}}, seeds=(1,))  # no val_acc: never chosen
    md = build_report(pd.concat([df, best_on_test]), tmp_path, strict=True).read_text()
    assert "2 of 8 successful rows have no validation accuracy" in md
    per_group = pd.read_csv(tmp_path / "tables" / "selection_per_group.csv")
    assert "L2/k-means(k=9)/L2/L2/max" not in set(per_group["val_selected"]) | set(per_group["test_selected"])
    assert sorted(per_group["optimism_gap"]) == [2.0, 5.0]


def test_k_auto_is_labelled_and_kept_off_the_k_axis():
    assert gen_label("kmeans", 0) == "k-means (k=auto)" and gen_label("kmeans", -1) == "k-means (k=all)"
    row = {"gen": "kmeans", "k": 0, "agg": "max", "m": -1, "distance": "inner_product", "weighting": "uniform",
           "norm_pre": "l2", "norm_post": "l2", "norm_inf": "l2", "shots": -1}
    assert config_text(row) == "L2/k-means(k=auto)/L2/L2/max"
    df = make_results({"kmeans:1": {G1: [80]}, "kmeans:5": {G1: [85]}, "kmeans:0": {G1: [86]}}, seeds=(1,))
    data, info = tables.k_sweep_data(add_config_labels(ok_rows(validate_results(df))))
    fig = plots.plot_k_sweep(data, tuple(info["norms"]))
    lines = {line.get_label(): line for line in fig.axes[0].get_lines() if isinstance(line, Line2D)}
    assert list(lines["k-means"].get_xdata()) == [1, 5]  # the curve: k = 1 and 5 only
    assert list(lines["k-means (k=auto)"].get_ydata()) == [86, 86]  # auto: a horizontal line
    assert tables.few_shot_line_order("k-means k=auto") > tables.few_shot_line_order("k-means k=50")


def test_k_sweep_table_names_the_auto_column(tmp_path: Path):
    df = make_results({"kmeans:1": {G1: [80]}, "kmeans:5": {G1: [85]}, "kmeans:0": {G1: [86]}}, seeds=(1,))
    md = build_report(df, tmp_path, strict=True).read_text()
    assert "| k=1 | k=5 | k=auto |" in md and "k=auto: k chosen per class" in md
