"""The wheel is a working tool: built, installed outside the checkout (no editable link), run from elsewhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_wheel_runs_from_any_directory(tmp_path):
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "target", tmp_path / "elsewhere"
    elsewhere.mkdir()
    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the checkout
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "outputs", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(source), "-w", str(wheels)], check=True,
                   capture_output=True, timeout=300)
    (wheel,) = wheels.glob("imprint_bench-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True,
                   capture_output=True, timeout=300)
    # -S: no site hooks, so the checkout's editable install is invisible; dependencies come from this environment
    env = {**os.environ, "PYTHONPATH": f"{target}{os.pathsep}{sysconfig.get_paths()['purelib']}",
           "IMPRINT_BENCH_ROOT": str(elsewhere), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-S", "-m", "imprint_bench", *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=300)

    probe = subprocess.run([sys.executable, "-S", "-c", "import imprint_bench; print(imprint_bench.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.startswith(str(target))
    job = run("--cfg", "job")
    assert job.returncode == 0 and "experiment_name: adhoc" in job.stdout, job.stderr
    (elsewhere / "mine" / "local").mkdir(parents=True)
    (elsewhere / "mine" / "local" / "default.yaml").write_text("flush_every: 7\n")  # a user's own settings
    assert "\nflush_every: 7\n" in run("--config-dir", str(elsewhere / "mine"), "--cfg", "job").stdout
    plan = run("-m", "experiment=table1", "mode=plan")
    assert plan.returncode == 0 and "plan: 12 jobs, 144 cells, 720 runs" in plan.stdout, plan.stderr
    tiny = run("dataset=synthetic", "dataset.dim=8", "method=qi", "nc1=false")
    assert tiny.returncode == 0, tiny.stderr
    assert (elsewhere / "outputs" / "results" / "adhoc" / "results.parquet").is_file()
