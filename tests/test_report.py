"""The report: Table-1 aggregation by hand, every figure from tiny tables, robustness and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imprint_bench.errors import ConfigError
from imprint_bench.imprint.spec import PRESETS, GenSpec, MethodSpec
from imprint_bench.report import build_report, report_main, tables
from imprint_bench.report.data import REQUIRED_COLUMNS, add_config_labels, ok_rows, validate_results
from imprint_bench.report.synthetic import synthetic_results

ALL_FIGURES = ["table1", "cd_table1", "cd_agg", "k_sweep", "few_shot", "d_in_1", "nc1_gain"]


def make_results(
    accs: dict[str, dict[tuple[str, str, str], list[float]]],
    *,
    mapping: str = "none",
    seeds: tuple[int, ...] = (1, 2, 3),
    **extra: object,
) -> pd.DataFrame:
    """A results table in the runner's schema from ``{method: {(backbone, dataset, task): [acc per seed]}}``.

    ``method`` is a preset name (its stage columns come from ``PRESETS``) or a dict-free custom spec string
    ``"gen:k"`` (L2/L2/L2, max). ``extra`` overrides columns on every row.
    """
    rows = []
    for method, groups in accs.items():
        if method in PRESETS:
            flat = PRESETS[method].canonical().to_flat()
            name = method
        else:
            gen, k = method.split(":")
            flat = MethodSpec(gen=GenSpec(gen, int(k))).to_flat()  # l2/l2/l2, max
            name = "custom"
        for (bb, ds, task), values in groups.items():
            for seed, acc in zip(seeds, values, strict=False):
                failed = acc is None or (isinstance(acc, float) and np.isnan(acc))
                rows.append(
                    {
                        "run_hash": f"{method}-{bb}-{ds}-{task}-{seed}-{mapping}",
                        "experiment": "test",
                        "method": name,
                        "backbone": bb,
                        "dataset": ds,
                        "mapping": mapping,
                        "task": task,
                        "seed": seed,
                        "shots": -1,
                        **flat,
                        "lam": np.nan if flat["lam"] is None else flat["lam"],
                        "acc": np.nan if failed else float(acc),
                        "macro_f1": np.nan if failed else float(acc) - 1,
                        "balanced_acc": np.nan if failed else float(acc),
                        "per_class_f1": [],
                        "n_classes": 10,
                        "n_train": 60000,
                        "n_test": 10000,
                        "n_proxies": 10,
                        "gen_s": 0.01,
                        "infer_s": 0.01,
                        "nc1": np.nan,
                        "nc1_ref": np.nan,
                        "status": "failed" if failed else "ok",
                        "error": "ValueError: boom" if failed else "",
                        "created_at": "2026-01-01T00:00:00",
                        "versions": "{}",
                    }
                )
    df = pd.DataFrame(rows)
    for col, value in extra.items():
        df[col] = value
    return df


G1, G2 = ("resnet18", "MNIST", "all"), ("resnet18", "CIFAR-10", "even")


def _hand_table() -> pd.DataFrame:
    return make_results(
        {
            "qi": {G1: [80, 82, 90], G2: [70, 71, 72]},  # medians 82, 71 → mean 76.5
            "ours": {G1: [88, 85, 86], G2: [75, 79, 77]},  # medians 86, 77 → mean 81.5
            "janson": {G1: [81, 81, 81], G2: [69, 69, 69]},  # medians 81, 69 → mean 75
        }
    )


def test_table1_median_over_seeds_then_mean_over_groups():
    ok = add_config_labels(ok_rows(validate_results(_hand_table())))
    med = tables.seed_medians(ok)
    t1 = tables.table1(med, ["qi", "janson", "ours"], show_paper=True).set_index("label")
    assert t1.loc["qi", "avg_acc"] == pytest.approx(76.5)
    assert t1.loc["ours", "avg_acc"] == pytest.approx(81.5)
    assert t1.loc["janson", "avg_acc"] == pytest.approx(75.0)
    assert t1.loc["qi", "std"] == pytest.approx(np.std([82, 71], ddof=1))
    assert t1.loc["qi", "stderr"] == pytest.approx(np.std([82, 71], ddof=1) / np.sqrt(2))
    assert (t1["n_groups"] == 2).all()
    # ranks within each group: ours 1, qi 2, janson 3 in both groups
    assert t1.loc["ours", "avg_rank"] == 1 and t1.loc["qi", "avg_rank"] == 2 and t1.loc["janson", "avg_rank"] == 3
    assert t1.loc["ours", "paper_acc"] == 91.06 and t1.loc["ours", "diff"] == pytest.approx(81.5 - 91.06)
    assert t1.loc["ours", "GEN"] == "k-means (k=20)" and t1.loc["janson", "AGG"] == "1-NN (euclidean)"
    assert t1.loc["qi", "NORMpre"] == "L2" and t1.loc["janson", "NORMpost"] == "none"


def test_report_table1_csv_paper_columns_and_method_order(tmp_path: Path):
    md = build_report(_hand_table(), tmp_path / "r", strict=True)
    t1 = pd.read_csv(tmp_path / "r" / "tables" / "table1.csv")
    assert list(t1["label"]) == ["qi", "janson", "ours"]  # the paper's order
    assert "paper_acc" in t1  # resnet18 × MNIST/CIFAR-10 × all/even: the paper's setting
    assert t1.set_index("label").loc["ours", "avg_acc"] == pytest.approx(81.5)
    text = md.read_text()
    assert "Table 1" in text and "86.79" in text and "Friedman" in text
    html = (tmp_path / "r" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2
    assert html.count("<table>") == html.count('<div class="scroll"><table>')  # wide tables scroll in the page
    assert "overflow-x: auto" in html and "overflow-wrap: anywhere" in html

    no_paper = build_report(_hand_table(), tmp_path / "n", paper="no", methods="ours,qi", strict=True)
    t1n = pd.read_csv(no_paper.parent / "tables" / "table1.csv")
    assert list(t1n["label"]) == ["ours", "qi"] and "paper_acc" not in t1n

    other = _hand_table().assign(dataset="digits")  # not the paper's data: auto hides the paper column
    t1o = pd.read_csv(build_report(other, tmp_path / "o", strict=True).parent / "tables" / "table1.csv")
    assert "paper_acc" not in t1o
    t1y = pd.read_csv(build_report(other, tmp_path / "y", paper="yes", strict=True).parent / "tables" / "table1.csv")
    assert "paper_acc" in t1y


def test_every_figure_from_a_tiny_synthetic_table(tmp_path: Path):
    df = synthetic_results(small=True, n_seeds=2)
    assert len(df) < 1500
    md = build_report(df, tmp_path, strict=True)
    for name in ALL_FIGURES:
        png = tmp_path / "figures" / f"{name}.png"
        assert png.is_file() and png.stat().st_size > 5000, name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"figures/{name}.png" in md.read_text()
    for csv in ("table1", "ranks_table1", "pairs_table1", "k_sweep", "few_shot", "d_in_1", "nc1", "by_backbone"):
        assert (tmp_path / "tables" / f"{csv}.csv").is_file(), csv
    assert "could not be produced" not in md.read_text()


def test_failed_rows_and_a_single_seed(tmp_path: Path):
    df = synthetic_results(small=True, n_seeds=1, n_fail=7)
    md = build_report(df, tmp_path, strict=True)
    text = md.read_text()
    assert "Failed rows (7)" in text and "synthetic failure" in text
    assert "Single seed" in text
    assert (tmp_path / "figures" / "k_sweep.png").is_file()
    failures = pd.read_csv(tmp_path / "tables" / "failures.csv")
    assert len(failures) == 7


def test_failed_preset_rows_do_not_enter_the_medians(tmp_path: Path):
    df = make_results({"qi": {G1: [80, None, 90], G2: [70, 71, 72]}, "ours": {G1: [85, 85, 85], G2: [75, 75, 75]}})
    build_report(df, tmp_path, strict=True)
    t1 = pd.read_csv(tmp_path / "tables" / "table1.csv").set_index("label")
    assert t1.loc["qi", "avg_acc"] == pytest.approx((85 + 71) / 2)  # median of [80, 90] = 85
    assert "WARNING: the number of seeds differs" in (tmp_path / "report.md").read_text()


def test_single_method_and_single_group(tmp_path: Path):
    md = build_report(make_results({"qi": {G1: [80, 81, 82]}}), tmp_path, strict=True)
    text = md.read_text()
    assert "Fewer than 2 methods" in text
    assert "k-sweep figure skipped" in text and "few-shot figure skipped" in text
    assert '"d in 1"' in text and "No NC1 values" in text
    t1 = pd.read_csv(tmp_path / "tables" / "table1.csv")
    assert t1["avg_acc"].iloc[0] == 81 and t1["n_groups"].iloc[0] == 1 and np.isnan(t1["std"].iloc[0])

    two = make_results({"qi": {G1: [80]}, "ours": {G1: [85]}}, seeds=(1,))
    text2 = build_report(two, tmp_path / "two", strict=True).read_text()
    assert "fewer than 2 blocks" in text2


def test_identical_methods_in_the_report_are_joined(tmp_path: Path):
    groups = {
        (bb, ds, t): [70.0 + i]
        for i, (bb, ds, t) in enumerate(
            (b, d, t) for b in ("resnet18", "resnet50") for d in ("MNIST", "CIFAR-10") for t in ("all", "even", "odd")
        )
    }
    df = make_results({"qi": groups, "janson": groups, "hosoda": groups}, seeds=(1,))
    md = build_report(df, tmp_path, strict=True)
    pairs = pd.read_csv(tmp_path / "tables" / "pairs_table1.csv")
    assert (pairs["p_raw"] == 1.0).all() and not pairs["significant"].any()
    assert "not significant" in md.read_text()
    assert (tmp_path / "figures" / "cd_table1.png").stat().st_size > 0


def test_custom_configurations_when_no_preset(tmp_path: Path):
    df = make_results({"kmeans:5": {G1: [90, 91, 92], G2: [80, 80, 80]}, "kmeans:2": {G1: [85], G2: [75]}})
    md = build_report(df, tmp_path, strict=True)
    t1 = pd.read_csv(tmp_path / "tables" / "table1.csv")
    assert list(t1["label"]) == ["L2/k-means(k=5)/L2/L2/max", "L2/k-means(k=2)/L2/L2/max"]
    assert "No preset method" in md.read_text()


def test_tracker_receives_summary_tables_and_images(tmp_path: Path):
    class Recorder:
        def __init__(self):
            self.summary, self.tables, self.images = {}, {}, {}

        def log_summary(self, d):
            self.summary.update(d)

        def log_table(self, name, df):
            self.tables[name] = df

        def log_image(self, name, path):
            self.images[name] = Path(path)

    rec = Recorder()
    build_report(_hand_table(), tmp_path, tracker=rec, strict=True)
    assert rec.summary["report/table1/ours/avg_acc"] == pytest.approx(81.5)
    assert "report/tables/table1" in rec.tables and isinstance(rec.tables["report/tables/table1"], pd.DataFrame)
    assert "report/figures/table1" in rec.images and not set(rec.tables) & set(rec.images)  # distinct keys
    assert rec.images and all(p.is_file() for p in rec.images.values())


def test_duplicate_runs_keep_the_ok_row():
    df = make_results({"qi": {G1: [80, 81, 82]}})
    failed_rerun = df.iloc[[0]].assign(status="failed", acc=np.nan, created_at="2027-01-01T00:00:00")
    out = validate_results(pd.concat([df, failed_rerun]))
    assert len(out) == 3 and (out["status"] == "ok").all()


def test_bad_input_names_the_file_and_the_columns(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found: .*nope.parquet"):
        build_report(tmp_path / "nope.parquet")
    with pytest.raises(ConfigError, match="no results.parquet in directory"):
        build_report(tmp_path)
    bad = tmp_path / "bad" / "results.parquet"
    bad.parent.mkdir()
    _hand_table().drop(columns=["acc", "seed"]).to_parquet(bad)
    with pytest.raises(ConfigError, match=r"bad/results.parquet lacks required column\(s\) \['seed', 'acc'\]"):
        build_report(bad.parent)
    with pytest.raises(ConfigError, match="no rows"):
        build_report(_hand_table().iloc[:0], tmp_path / "out")
    with pytest.raises(ConfigError, match="unknown method"):
        build_report(_hand_table(), tmp_path / "out", methods="qi,mine")
    with pytest.raises(ConfigError, match="paper"):
        build_report(_hand_table(), tmp_path / "out", paper="maybe")
    with pytest.raises(ConfigError, match="out_dir"):
        build_report(_hand_table())


def test_cli_writes_next_to_the_results_and_reports_errors(tmp_path: Path, capsys):
    path = tmp_path / "exp" / "results.parquet"
    path.parent.mkdir()
    _hand_table().to_parquet(path)
    assert report_main([str(path.parent), "--methods", "qi,ours", "--paper", "no"]) == 0
    assert (tmp_path / "exp" / "report" / "report.md").is_file()
    assert (tmp_path / "exp" / "report" / "report.html").is_file()
    assert report_main([str(tmp_path / "missing.parquet")]) == 2
    assert "not found" in capsys.readouterr().err


def test_all_rows_failed_and_minimal_columns(tmp_path: Path):
    failed = make_results({"qi": {G1: [None, None]}})
    text = build_report(failed, tmp_path / "f", strict=True).read_text()
    assert "No successful rows" in text and "Failed rows (2)" in text
    minimal = _hand_table()[REQUIRED_COLUMNS]
    build_report(minimal, tmp_path / "m", strict=True)
    t1 = pd.read_csv(tmp_path / "m" / "tables" / "table1.csv").set_index("label")
    assert t1.loc["ours", "avg_acc"] == pytest.approx(81.5)


def test_rerun_into_the_same_folder_removes_stale_outputs(tmp_path: Path):
    build_report(synthetic_results(small=True, n_seeds=1, n_fail=0), tmp_path, strict=True)
    assert (tmp_path / "figures" / "few_shot.png").is_file()
    build_report(_hand_table(), tmp_path, strict=True)
    assert not (tmp_path / "figures" / "few_shot.png").exists()
    assert (tmp_path / "figures" / "table1.png").is_file()
