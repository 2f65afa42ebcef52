"""Real Hydra multiruns (the imprint sweeper with the basic, joblib and submitit_local launchers, and Hydra's
basic sweeper), plan mode, resume after SIGKILL (trackers: test_tracking.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import kill_after_parts

ROOT = Path(__file__).resolve().parent.parent
# two feature sets (synthetic seeds) × 2 tasks × 2 seeds × 2 methods: 2 jobs of 4 cells, 16 runs
SWEEP = ("-m", "dataset=synthetic", "dataset.n_train_per_class=60", "dataset.n_test_per_class=30", "dataset.dim=16",
         "dataset.seed=0,1", "task=all,even", "seed=1,2", "nc1=false", "grid={method:[qi,ours]}")
KEY = ["feature_key", "task", "seed", "method"]

pytestmark = pytest.mark.slow


def cli(root: Path, *args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "IMPRINT_BENCH_ROOT": str(root), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
                **(env or {})}
    return subprocess.run([sys.executable, "-m", "imprint_bench", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=600, **kw)


def table(root: Path, experiment: str = "adhoc") -> pd.DataFrame:
    df = pd.read_parquet(root / "outputs" / "results" / experiment / "results.parquet")
    return df.sort_values(KEY).reset_index(drop=True)


@pytest.fixture(scope="module")
def basic_table(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("basic")
    out = cli(root, *SWEEP)
    assert out.returncode == 0, out.stderr
    assert "sweep finished: 2 jobs reported, 16 runs done, 0 skipped, 0 failed" in out.stdout
    return table(root)


@pytest.mark.parametrize("launcher", [
    ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2"),
    ("hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
     "hydra.launcher.submitit_folder=${hydra.sweep.dir}/.submitit"),  # as the slurm preset
    ("hydra/sweeper=basic",),  # one job per cell, as before grouping: the same rows
])
def test_launchers_and_one_job_per_cell_match_the_grouped_basic_launcher(tmp_path, basic_table, launcher):
    out = cli(tmp_path, *SWEEP, *launcher)
    assert out.returncode == 0, out.stderr
    got = table(tmp_path)
    assert len(got) == len(basic_table) == 16 and set(got.status) == {"ok"}
    pd.testing.assert_frame_equal(got[[*KEY, "acc", "macro_f1", "nc1", "run_hash", "cell_hash"]],
                                  basic_table[[*KEY, "acc", "macro_f1", "nc1", "run_hash", "cell_hash"]])
    if "hydra/launcher=submitit_local" in launcher:  # the slurm preset's folder: no literal %j folder
        logs = {p.name for p in (tmp_path / "outputs" / "logs").glob("multiruns/*/.submitit/*")}
        assert logs and not any("%j" in name for name in logs) and any(n.endswith("_log.out") for n in logs)
    if launcher == ("hydra/sweeper=basic",):
        assert "sweep finished: 8 jobs reported" in out.stdout


def test_plan_counts_without_running_or_launching(tmp_path):
    out = cli(tmp_path, *SWEEP, "mode=plan")
    assert out.returncode == 0, out.stderr
    assert "plan: 2 jobs, 8 cells, 16 runs" in out.stdout
    assert out.stdout.count("4 cells: 2 tasks (all, even) × 2 seeds, 8 runs") == 2
    assert not (tmp_path / "outputs").exists()  # no results, no job log folders


def test_a_second_sweep_skips_every_cell(tmp_path):
    assert cli(tmp_path, *SWEEP).returncode == 0
    out = cli(tmp_path, *SWEEP)
    assert out.returncode == 0, out.stderr
    assert "sweep finished: 2 jobs reported, 0 runs done, 16 skipped, 0 failed" in out.stdout
    log = (tmp_path / "outputs" / "results" / "adhoc" / "sweep.log").read_text()  # beside the results, both sweeps
    assert log.count("launching 2 jobs (BasicLauncher)") == 2 and log.count("\t#1 ") == 2
    assert "cells={" not in out.stderr + out.stdout  # one line per job, not its override list


def test_resume_after_sigkill_loses_only_runs_in_flight(tmp_path):
    args = ("dataset=synthetic", "dataset.dim=16", "nc1=false", "flush_every=3", "experiment_name=killed",
            "grid={gen.name:[kmeans,kmedoids,fps,random],gen.k:[1,2,3,4,5,6,7,8,9,10]}")
    runs = tmp_path / "outputs" / "results" / "killed" / "runs"
    written = kill_after_parts(tmp_path, args, "killed")
    assert 0 < written < 40
    out = cli(tmp_path, *args)
    assert out.returncode == 0, out.stderr
    assert f"{written} skipped" in out.stdout + out.stderr
    df = table(tmp_path, "killed")
    assert len(df) == 40 and df.run_hash.is_unique and set(df.status) == {"ok"}
    assert not list(runs.glob("*/.*.tmp"))


@pytest.mark.parametrize(("override", "message"), [
    ("grid={method:[qi,ourz]}", "unknown method presets ['ourz'] in grid; valid: qi, hosoda, janson, ours, oracle"),
    ("seed=1,abc", "seed must be an integer, got 'abc'"),
])
def test_a_bad_value_in_a_sweep_fails_before_any_job(tmp_path, override, message):
    out = cli(tmp_path, *[a for a in SWEEP if not a.startswith(override.split("=")[0] + "=")], override)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "outputs").exists()
