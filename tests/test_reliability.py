"""Bad input gets one clear line before any work; nothing is dropped silently; Ctrl-C keeps what is done."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from imprint_bench.data.npz import load_npz_features
from imprint_bench.data.tasks import make_task
from imprint_bench.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "IMPRINT_BENCH_ROOT": str(root), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", "imprint_bench", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def write_npz(path: Path, mixture, **changes) -> Path:
    data = {"X_train": mixture.x_train.numpy(), "y_train": mixture.y_train.numpy(), "X_test": mixture.x_test.numpy(),
            "y_test": mixture.y_test.numpy(), **changes}
    np.savez(path, **{k: v for k, v in data.items() if v is not None})
    return path


@pytest.mark.parametrize(("make", "message"), [
    (lambda p, m: p.write_bytes(b""), "is empty"),
    (lambda p, m: p.write_text("X_train,y_train\n1,2\n"), r"is not a \.npz \(zip\) archive"),
    (lambda p, m: write_npz(p, m, X_train=np.array([object()] * len(m.y_train), dtype=object)),
     "X_train is an object array, which is never unpickled"),
    (lambda p, m: write_npz(p, m, class_names=np.array(["a", "b"])), "class_names has 2 names but the labels go up"),
    (lambda p, m: write_npz(p, m, class_names=np.array([f"c{i % 9}" for i in range(10)])),
     r"class_names repeats \['c0'\]"),
])
def test_bad_feature_files_get_one_line(tmp_path, mixture, make, message):
    path = tmp_path / "bad.npz"
    make(path, mixture)
    with pytest.raises(ConfigError, match=message):
        load_npz_features(path)
    out = cli(tmp_path, "dataset=features", f"dataset.path={path}", "method=qi", "nc1=false")
    assert out.returncode == 2 and message.replace("\\", "") in out.stderr.replace("\\", "")
    assert "Traceback" not in out.stderr and not (tmp_path / "outputs" / "results").exists()


def test_test_classes_without_training_rows_are_an_error_or_counted(tmp_path, mixture):
    keep = mixture.y_train != 9
    only_test = write_npz(tmp_path / "unseen.npz", mixture, X_train=mixture.x_train[keep].numpy(),
                          y_train=mixture.y_train[keep].numpy())
    features = load_npz_features(only_test)
    with pytest.raises(ConfigError, match=r"60 rows of classes \[9\] that have no training rows"):
        make_task(features, "all", None)
    task = make_task(features, "all", None, unseen_test="exclude")
    assert task.n_classes == 9 and task.n_test_excluded == 60 and int(task.y_test.shape[0]) == 540
    assert make_task(features, "even", [0, 2, 4]).n_test_excluded == 0  # an explicit class list is not affected

    out = cli(tmp_path, "dataset=features", f"dataset.path={only_test}", "method=qi", "nc1=false")
    assert out.returncode == 2 and "task.unseen_test=exclude" in out.stderr and "Traceback" not in out.stderr
    out = cli(tmp_path, "dataset=features", f"dataset.path={only_test}", "method=qi", "nc1=false",
              "task.unseen_test=exclude")
    assert out.returncode == 0, out.stderr
    row = pd.read_parquet(tmp_path / "outputs" / "results" / "adhoc" / "results.parquet").iloc[0]
    assert (row.n_test, row.n_test_excluded, row.n_classes) == (540, 60, 9)

    from imprint_bench.report import build_report

    report = build_report(tmp_path / "outputs" / "results" / "adhoc" / "results.parquet", tmp_path / "report")
    assert "60 test rows in 1 cells belong to classes without training rows" in Path(report).read_text()


@pytest.mark.parametrize("name", ["../../escape", "a/b", ".hidden", "x" * 101, ""])
def test_experiment_name_must_be_one_folder_name(tmp_path, npz_file, name):
    out = cli(tmp_path, "dataset=features", f"dataset.path={npz_file}", "method=qi", f"experiment_name='{name}'")
    assert out.returncode == 2 and "experiment_name must be 1-100 letters" in out.stderr
    assert not (tmp_path / "outputs" / "results").exists() and not (tmp_path.parent / "escape").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_results_folder_fails_before_any_run(tmp_path, npz_file):
    results = tmp_path / "ro"
    results.mkdir()
    results.chmod(0o500)
    out = cli(tmp_path, "dataset=features", f"dataset.path={npz_file}", "method=qi", f"paths.results_dir={results}")
    assert out.returncode == 2 and "is not writable" in out.stderr


def test_unwritable_results_folder_fails_before_any_run(tmp_path, npz_file):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the results folder should be")
    for args in ([], ["-m", "seed=1,2"]):
        out = cli(tmp_path, *args, "dataset=features", f"dataset.path={npz_file}", "method=qi", "nc1=false",
                  f"paths.results_dir={blocker}")
        assert out.returncode == 2 and "is not writable" in out.stderr and "Traceback" not in out.stderr


def _terminal() -> None:
    """As in a terminal: Ctrl-C reaches the whole process group, whatever SIGINT disposition the test runner
    inherited (a job started in the background ignores SIGINT)."""
    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# Under the Optuna sweeper Ctrl-C gives the same line in most tries, but about 1 in 15 hung or ended with exit 1 in
# repeated tries here (a race between the signal and Optuna/Hydra's trial handling, not yet found): not tested in CI.
@pytest.mark.parametrize("launch", [
    ("-m", "seed=1,2,3,4"),
    ("-m", "hydra/launcher=local_parallel", "dataset.seed=0,1", "seed=1,2"),  # two feature sets: two workers
], ids=["basic", "joblib"])
@pytest.mark.slow
def test_ctrl_c_prints_one_line_and_keeps_finished_runs(tmp_path, launch):
    env = {**os.environ, "IMPRINT_BENCH_ROOT": str(tmp_path), "WANDB_MODE": "disabled"}
    args = (*launch, "dataset=synthetic", "dataset.dim=16", "nc1=false", "flush_every=2",
            "grid={gen.name:[kmeans,kmedoids,fps],gen.k:[1,2,3,4,5,6,7,8]}" if "-m" in launch else "gen=kmeans")
    proc = subprocess.Popen([sys.executable, "-m", "imprint_bench", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_terminal)
    runs = tmp_path / "outputs" / "results"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(runs.glob("*/runs/*/*.parquet"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.count("interrupted: the runs finished so far are saved") == 1 and "Traceback" not in err, err
    assert "leaked semaphore" not in err
    assert sum(len(pd.read_parquet(p)) for p in runs.glob("*/runs/*/*.parquet")) > 0


def test_seed_must_be_an_integer(tmp_path, npz_file):
    out = cli(tmp_path, "dataset=features", f"dataset.path={npz_file}", "method=qi", "seed=abc")
    assert out.returncode == 2 and "seed must be an integer, got 'abc'" in out.stderr
    assert torch.__version__  # the engine was never needed for this


def test_feature_files_label_their_rows(tmp_path, mixture, compose_cfg):
    from imprint_bench.plan import plan_job

    plain = write_npz(tmp_path / "mnist_vit.npz", mixture)
    named = write_npz(tmp_path / "x.npz", mixture, name=np.array("cifar"), backbone=np.array("vit_b_16"))
    cell = plan_job(compose_cfg("dataset=features", f"dataset.path={plain}", "method=qi")).cells[0].cell
    assert (cell.backbone, cell.dataset) == ("precomputed", "mnist_vit")
    cell = plan_job(compose_cfg("dataset=features", f"dataset.path={named}", "method=qi")).cells[0].cell
    assert (cell.backbone, cell.dataset) == ("vit_b_16", "cifar")
    job = plan_job(compose_cfg("dataset=features", f"dataset.path={named}", "dataset.name=mine", "method=qi"))
    cell = job.cells[0].cell
    assert cell.dataset == "mine"


def test_different_feature_sets_never_share_a_report_group():
    from imprint_bench.report.data import separate_feature_sets

    rows = pd.DataFrame({"backbone": ["b"] * 4, "dataset": ["d", "d", "d", "e"], "mapping": ["none"] * 4,
                         "feature_key": ["npz-aaaaaaaa11", "npz-aaaaaaaa11", "npz-bbbbbbbb22", "npz-cccccccc33"]})
    out, notes = separate_feature_sets(rows)
    assert list(out["dataset"]) == ["d [aaaaaaaa]", "d [aaaaaaaa]", "d [bbbbbbbb]", "e"]
    assert len(notes) == 1 and "2 different feature sets are labelled b / d" in notes[0]
    assert separate_feature_sets(rows.iloc[:2])[1] == []


def test_a_subset_larger_than_the_split_is_an_error(tmp_path):
    out = cli(tmp_path, "dataset=digits", "backbone=pixels", "method=qi", "nc1=false", "dataset.subset.train=100000")
    assert out.returncode == 2 and "dataset.subset.train=100000 but the train split has only" in out.stderr


LONG_SWEEP = ("-m", "dataset=synthetic", "dataset.dim=16", "nc1=false", "flush_every=2", "task=all,even",
              "seed=1,2", "grid={gen.name:[kmeans,kmedoids,fps],gen.k:[1,2,3,4,5,6,7,8]}")
LONG_RUNS = 2 * 2 * 24


def _start(root: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "IMPRINT_BENCH_ROOT": str(root), "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "imprint_bench", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _final_table(root: Path) -> pd.DataFrame:
    return pd.read_parquet(root / "outputs" / "results" / "adhoc" / "results.parquet")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("reference")
    assert cli(root, *LONG_SWEEP).returncode == 0
    return _final_table(root)


@pytest.mark.slow
@pytest.mark.parametrize(("stop", "after_parts"), [
    (signal.SIGKILL, 1), (signal.SIGKILL, 4), (signal.SIGKILL, 9), (signal.SIGTERM, 3),
])
def test_a_stopped_sweep_resumes_to_exactly_the_expected_rows(tmp_path, uninterrupted, stop, after_parts):
    runs = tmp_path / "outputs" / "results" / "adhoc" / "runs"
    proc = _start(tmp_path, *LONG_SWEEP)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(runs.glob("*/*.parquet"))) < after_parts and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(stop)
    proc.wait(timeout=60)
    kept = sum(len(pd.read_parquet(p)) for p in runs.glob("*/*.parquet"))  # every part is readable
    assert kept > 0
    out = cli(tmp_path, *LONG_SWEEP)
    assert out.returncode == 0, out.stderr
    assert f"{LONG_RUNS - kept} runs done, {kept} skipped, 0 failed" in out.stdout
    df = _final_table(tmp_path)
    assert len(df) == LONG_RUNS and df.run_hash.is_unique and set(df.status) == {"ok"}
    merged = df.merge(uninterrupted, on="run_hash", suffixes=("", "_ref"))
    assert len(merged) == LONG_RUNS and (merged["acc"] == merged["acc_ref"]).all()


@pytest.mark.slow
def test_two_identical_sweeps_at_once_give_each_run_once(tmp_path):
    first, second = _start(tmp_path, *LONG_SWEEP), _start(tmp_path, *LONG_SWEEP)
    assert first.wait(timeout=300) == 0 and second.wait(timeout=300) == 0
    out = cli(tmp_path, "mode=collect")
    assert out.returncode == 0, out.stderr
    df = _final_table(tmp_path)
    assert len(df) == LONG_RUNS and df.run_hash.is_unique and set(df.status) == {"ok"}


def _flip_a_data_byte(part: Path) -> None:
    """Flip one byte of a part so that its values change (the page checksums or the rows digest must catch it)."""
    import pyarrow.parquet as pq

    from imprint_bench.identity import canonical_json

    def values() -> str:  # as text: NaN == NaN
        return canonical_json(pq.read_table(part).to_pylist())

    data, original = part.read_bytes(), values()
    for offset in range(len(data) // 4, len(data) // 2):
        flipped = bytearray(data)
        flipped[offset] ^= 0x10
        part.write_bytes(bytes(flipped))
        try:  # without verification, would a reader silently get other values?
            if values() != original:
                return
        except Exception:
            continue
    raise AssertionError("no byte flip found that silently changes the values")


@pytest.mark.parametrize("damage", ["truncated", "empty", "flipped byte"])
def test_collect_reports_and_skips_damaged_parts(tmp_path, npz_file, damage):
    from imprint_bench.results import collect

    assert cli(tmp_path, "-m", "dataset=features", f"dataset.path={npz_file}", "method=qi,ours", "seed=1,2",
               "nc1=false").returncode == 0
    parts = sorted((tmp_path / "outputs" / "results" / "adhoc" / "runs").glob("*/*.parquet"))
    victim = parts[0]
    lost = len(pd.read_parquet(victim))
    if damage == "flipped byte":
        _flip_a_data_byte(victim)
    else:
        victim.write_bytes(victim.read_bytes()[:50] if damage == "truncated" else b"")
    root = tmp_path / "outputs" / "results" / "adhoc"
    kept = collect(root, write=False)  # the rows of the damaged part are still in the earlier results.parquet
    assert len(kept.corrupted) == 1 and str(victim) in kept.corrupted[0]
    assert kept.kept == lost and len(kept.table) == 4 and f"kept {lost} rows of the existing" in kept.describe()
    (root / "results.parquet").unlink()
    summary = collect(root, write=False)
    assert len(summary.corrupted) == 1 and str(victim) in summary.corrupted[0]
    assert len(summary.table) == 4 - lost and "skipped corrupted file" in summary.describe()


@pytest.mark.parametrize("task", ["short", "all"])  # classes known when planning, or only once the data is read
def test_a_configuration_pruned_to_nothing_is_an_error(tmp_path, npz_file, task):
    out = cli(tmp_path, "dataset=features", f"dataset.path={npz_file}", "gen=mean", "agg=mnn", "agg.m=500",
              "agg.distance=cosine", f"task={task}", "nc1=false")
    assert out.returncode == 2 and "every configuration" in out.stderr and "lower agg.m" in out.stderr
    assert "Traceback" not in out.stderr


def test_each_job_says_what_was_pruned(tmp_path, npz_file):
    out = cli(tmp_path, "dataset=features", f"dataset.path={npz_file}", "nc1=false", "task=short",
              "grid={norm.pre:[l2],norm.inf:[none,l2],gen.name:[mean],agg.name:[mnn],agg.m:[1,2,5],"
              "agg.distance:[cosine]}")
    assert out.returncode == 0, out.stderr
    log = out.stdout + out.stderr
    assert "2 runs: 2 ok" in log and "pruned: 3 invalid (NORMpre='l2' requires NORMinf='l2'" in log
    assert "1 mNN runs with m above the task's number of proxies" in log
