"""The SLURM launcher against a real scheduler: ``make test-cluster`` starts a single-node cluster
(scripts/slurm_cluster.sh) and runs these tests (marked ``slurm``, left out of ``make test``). Without a cluster they
fail: they never skip quietly.

Covered: the site launcher recipe of the README (``--config-dir DIR hydra/launcher=mysite`` with ``defaults:
[slurm]``) gives the same rows as a local run and shows its job name in ``squeue``; an ``sbatch`` refusal is one line;
a job requeued mid-run (``scontrol requeue``, then a time-limit signal) resumes by hash; a job that may not be
requeued again ends the sweep with one line and leaves no "failed" rows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from test_sweeps import KEY, SWEEP, cli, table

pytestmark = pytest.mark.slurm
ROOT = Path(__file__).resolve().parent.parent
SITE = """defaults:
  - slurm
gpus_per_node: 0
cpus_per_task: 1
mem_gb: 1
timeout_min: 10
{extra}
setup:
  - export HF_HUB_OFFLINE=1
"""
# one job of 60 runs that takes about 30 s (a GEN of our own that sleeps 0.05 s per class), written two runs per part
SLOW_GEN = """import time


def slow_first(x, k, generator, delay=0.05):
    time.sleep(delay)
    return x[:k]
"""
LONG = ("-m", "dataset=synthetic", "dataset.dim=16", "nc1=false", "flush_every=2", "hydra/launcher=mysite",
        "gen=custom", "gen._target_=slow_gen.slow_first", f"grid={{gen.k:[{','.join(map(str, range(1, 61)))}]}}")


@pytest.fixture(scope="module", autouse=True)
def cluster() -> None:
    """The cluster must answer; a missing one is an error (make test-cluster starts it)."""
    if shutil.which("sinfo") is None:
        pytest.fail("no SLURM client (sinfo) here: run these tests with make test-cluster")
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0 or not out.stdout.strip():
        pytest.fail(f"no SLURM cluster answers (sinfo: {out.stderr.strip() or out.stdout.strip()}): "
                    "make test-cluster starts one")


def site(tmp_path: Path, extra: str = "") -> str:
    """The README's site launcher: DIR/hydra/launcher/mysite.yaml starting from the preset."""
    folder = tmp_path / "site" / "hydra" / "launcher"
    folder.mkdir(parents=True)
    (folder / "mysite.yaml").write_text(SITE.format(extra=extra))
    return f"--config-dir={tmp_path / 'site'}"


def start(root: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "IMPRINT_BENCH_ROOT": str(root), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
           **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "imprint_bench", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def running_job(name: str, timeout: float = 120) -> str:
    """The id of the running job called ``name`` (waits until SLURM runs it)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(["squeue", "-h", "-t", "R", "-n", name, "-o", "%i"], capture_output=True, text=True)
        if out.stdout.strip():
            return out.stdout.split()[0]
        time.sleep(0.5)
    queue = subprocess.run(["squeue"], capture_output=True, text=True).stdout
    raise AssertionError(f"no running job {name} within {timeout} s: {queue}")


def rerun_now(name: str, timeout: float = 60) -> str:
    """A requeued job waits in PENDING (BeginTime, about two minutes): start it now, and return its id once it runs."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i %T"], capture_output=True, text=True)
        listed = out.stdout.split()
        if listed and listed[1] == "PENDING":
            subprocess.run(["scontrol", "update", f"jobid={listed[0]}", "StartTime=now"], check=True, timeout=30)
            return running_job(name)
        time.sleep(0.2)
    raise AssertionError(f"{name} was not requeued within {timeout} s")


def wait_for_rows(root: Path, experiment: str, at_least: int, timeout: float = 120) -> int:
    runs = root / "outputs" / "results" / experiment / "runs"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            n = sum(len(pd.read_parquet(p)) for p in runs.glob("*/*.parquet"))
        except (OSError, ValueError):  # a part being renamed into place
            n = 0
        if n >= at_least:
            return n
        time.sleep(0.2)
    raise AssertionError(f"fewer than {at_least} rows within {timeout} s")


def test_site_launcher_gives_the_rows_of_a_local_run_and_names_the_job(tmp_path):
    local = tmp_path / "local"
    assert cli(local, *SWEEP).returncode == 0
    proc = start(tmp_path / "cluster", site(tmp_path), *SWEEP, "hydra/launcher=mysite", "experiment_name=onslurm")
    job = running_job("imprint-onslurm")  # the preset's name: imprint-<experiment>
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert job and "sweep finished: 2 jobs reported, 16 runs done" in stdout
    got, want = table(tmp_path / "cluster", "onslurm"), table(local)
    columns = [*KEY, "acc", "macro_f1", "run_hash", "cell_hash"]
    pd.testing.assert_frame_equal(got[columns], want[columns])
    logs = list((tmp_path / "cluster" / "outputs" / "logs").glob("multiruns/*/.submitit/*_log.out"))
    assert len(logs) == 2, logs  # one log per array task


def test_an_sbatch_refusal_is_one_line(tmp_path):
    out = cli(tmp_path, *SWEEP, "hydra/launcher=slurm", "hydra.launcher.mem_gb=1")  # the preset asks for a GPU
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.strip()]
    assert errors == [errors[0]] and errors[0].startswith("error: SLURM refused the jobs: Invalid generic resource")
    assert "hydra.launcher.gpus_per_node=0" in errors[0] and "Traceback" not in out.stdout + out.stderr


def test_a_requeued_job_resumes_by_hash_and_the_last_allowed_stop_ends_in_one_line(tmp_path):
    """``scontrol requeue`` mid-run, then two time-limit signals with max_num_timeout=1: the first requeues, the
    second ends the job; the sweep then says so in one line, and a rerun completes the table exactly."""
    (tmp_path / "slow_gen.py").write_text(SLOW_GEN)
    env = {"PYTHONPATH": str(tmp_path)}  # SLURM passes the environment on to the job
    args = (site(tmp_path, "max_num_timeout: 1"), *LONG, "experiment_name=requeue")
    proc = start(tmp_path, *args, env=env)
    name = "imprint-requeue"
    job = running_job(name)
    n = wait_for_rows(tmp_path, "requeue", 4)
    subprocess.run(["scontrol", "requeue", job.split("_")[0]], check=True, timeout=30)
    job = rerun_now(name)
    n = wait_for_rows(tmp_path, "requeue", n + 2)  # the rerun works (and skipped what was done)
    # a time-limit signal (what SLURM sends signal_delay_s before the limit): submitit requeues once more
    subprocess.run(["scancel", "--signal=USR2", job], check=True, timeout=30)
    job = rerun_now(name)
    n = wait_for_rows(tmp_path, "requeue", n + 2)
    subprocess.run(["scancel", "--signal=USR2", job], check=True, timeout=30)  # the last one: no requeue left
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 1, stdout + stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "timed-out too many times" in lines[0] and "max_num_timeout=1" in lines[0], stderr
    assert "Traceback" not in stderr
    parts = list((tmp_path / "outputs" / "results" / "requeue" / "runs").glob("*/*.parquet"))
    rows = pd.concat([pd.read_parquet(p) for p in parts])
    assert set(rows.status) == {"ok"} and rows.run_hash.is_unique and n <= len(rows) < 60  # no "failed" rows
    out = cli(tmp_path, *args, env=env)  # the same command on the cluster finishes the table
    assert out.returncode == 0, out.stderr
    assert f"{len(rows)} skipped" in out.stdout
    final = table(tmp_path, "requeue")
    assert len(final) == 60 and final.run_hash.is_unique and set(final.status) == {"ok"}


def test_a_job_cancelled_on_the_cluster_ends_the_command_in_one_line(tmp_path):
    """``scancel`` kills the task without a result; this cluster has no accounting (sacct fails), so the job's end
    is read from squeue: the command ends (it does not wait without end) with one line, the finished runs kept."""
    (tmp_path / "slow_gen.py").write_text(SLOW_GEN)
    proc = start(tmp_path, site(tmp_path), *LONG, "experiment_name=cancelled", env={"PYTHONPATH": str(tmp_path)})
    job = running_job("imprint-cancelled")
    n = wait_for_rows(tmp_path, "cancelled", 4)
    subprocess.run(["scancel", job], check=True, timeout=30)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 1, stdout + stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "ended without a result (SLURM job" in lines[0] and "state CANCELLED" in lines[0], stderr
    assert "Traceback" not in stderr and stderr.count("no SLURM accounting") <= 1
    assert wait_for_rows(tmp_path, "cancelled", n) >= n  # what was written stays
