"""The imprint-bench entry point end to end (subprocesses): rows written, failures recorded, resume, errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from imprint_bench.results import collect
from imprint_bench.schema import COLUMN_NAMES

ROOT = Path(__file__).resolve().parent.parent



def run_cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "IMPRINT_BENCH_ROOT": str(tmp_path), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", "imprint_bench", *overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def results(tmp_path: Path, experiment: str = "adhoc") -> pd.DataFrame:
    return pd.read_parquet(tmp_path / "outputs" / "results" / experiment / "results.parquet")


def test_features_run_writes_the_expected_row_and_resumes(tmp_path, npz_file):
    args = ("dataset=features", f"dataset.path={npz_file}", "method=ours", "task=even", "seed=123987")
    first = run_cli(tmp_path, *args)
    assert first.returncode == 0, first.stderr
    df = results(tmp_path)
    assert len(df) == 1 and list(df.columns) == COLUMN_NAMES
    row = df.iloc[0]
    assert (row.dataset, row.task, row.seed, row.method, row.gen, row.k, row.status) == (
        "emb", "even", 123987, "ours", "kmeans", 20, "ok")  # labelled by the file stem
    assert row.backbone == "precomputed" and row.n_classes == 5 and len(row.per_class_f1) == 5
    assert 90 < row.acc <= 100 and row.error == ""
    again = run_cli(tmp_path, *args)
    assert again.returncode == 0 and "0 ok, 0 failed, 1 skipped" in again.stdout + again.stderr
    assert len(results(tmp_path)) == 1


def test_stage_overrides_and_grid(tmp_path, npz_file):
    out = run_cli(tmp_path, "dataset=features", f"dataset.path={npz_file}", "gen=kmeans", "gen.k=5", "agg=mnn",
                  "agg.m=3", "task=short", "grid={agg.weighting:[uniform,distance]}")
    assert out.returncode == 0, out.stderr
    df = results(tmp_path)
    assert sorted(df.weighting) == ["distance", "uniform"] and set(df.k) == {5} and set(df.m) == {3}


def test_a_failing_run_records_a_failed_row(tmp_path, npz_file):
    # one class → one proxy in total: a Mahalanobis covariance cannot be estimated
    out = run_cli(tmp_path, "dataset=features", f"dataset.path={npz_file}", "task.name=one", "task.classes=[3]",
                  "gen=mean", "norm=none", "agg=mnn", "agg.distance=mahalanobis")
    assert out.returncode == 0, out.stderr
    row = results(tmp_path).iloc[0]
    assert row.status == "failed" and "at least 2 proxies" in row.error and pd.isna(row.acc)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("gen=kmeanz", "Could not find 'gen/kmeanz'"),
        ("gen.k=0", "gen.k must be a positive integer or -1"),
        ("agg.m=0", "agg.m must be an integer >= 1"),
        ("norm.inf=none", "requires NORMinf"),
        ("dataset.path=/nonexistent.npz", "does not exist"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, npz_file, override, message):
    args = ["dataset=features", f"dataset.path={npz_file}", "method=ours"]
    if override.startswith("agg.m"):
        args.append("agg=mnn")
    out = run_cli(tmp_path, *args, override)
    assert out.returncode != 0
    assert message in out.stderr + out.stdout
    assert not (tmp_path / "outputs" / "results" / "adhoc" / "runs").exists() or collect(
        tmp_path / "outputs" / "results" / "adhoc", write=False).table.empty


def test_help_names_the_program_its_commands_and_the_groups_users_choose_from(tmp_path):
    out = run_cli(tmp_path, "--help")
    assert out.returncode == 0 and out.stdout.startswith("imprint-bench: weight imprinting")
    assert "powered by Hydra" not in out.stdout and "schema" not in out.stdout
    for line in ("experiment=quickstart", "mode=plan", "-m backbone=", "  gen             all, cov_max, custom",
                 "  method          hosoda, janson, oracle, ours, qi"):
        assert line in out.stdout


def test_a_command_keeps_the_objects_of_torch_s_import_out_of_the_garbage_collector_s_scans():
    code = ("import gc\nfrom imprint_bench.runner import kept_for_good\n"
            "with kept_for_good():\n    import torch\n"
            "frozen = gc.get_freeze_count()\n"
            "with kept_for_good():  # torch already loaded (a test process, a second job): nothing changes\n"
            "    pass\n"
            "print(frozen > 50_000, gc.isenabled(), gc.get_freeze_count() == frozen)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "True", "True"], out.stderr
