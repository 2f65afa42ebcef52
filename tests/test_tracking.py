"""Experiment trackers: W&B offline run files and a local MLflow store hold one run per configuration with its
stage options as fields; the collect step logs the report; a failed end-of-sweep collect fails the command."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imprint_bench.errors import ConfigError
from imprint_bench.tracking import (
    FIELDS,
    configuration_fields,
    configuration_metrics,
    make_tracker,
    mlflow_key,
)

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("backbone", "dataset", "task", "seed", "norm_pre", "gen", "k", "norm_post", "norm_inf", "agg", "m",
          "distance", "method")
SUMMARY = ("acc", "macro_f1", "balanced_acc", "gen_s", "infer_s")
# mlflow's SQL store uses a loader strategy SQLAlchemy 2.1 deprecates
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow")
TINY_SWEEP = ("-m", "dataset=synthetic", "dataset.dim=8", "dataset.n_train_per_class=30", "dataset.n_test_per_class=10",
              "nc1=false", "grid={method:[qi,ours]}", "seed=1,2")


def row(gen: str = "kmeans", k: int = 20, seed: int = 1, acc: float = 90.0, **extra) -> dict:
    """A result row as the runner hands it to a tracker (numpy scalars included)."""
    base = {"experiment": "exp", "backbone": "efficientnet_lite0", "dataset": "mnist5k", "mapping": None,
            "task": "even", "seed": np.int64(seed), "shots": -1, "method": "custom", "norm_pre": "l2", "gen": gen,
            "k": np.int64(k), "norm_post": "l2", "norm_inf": "l2", "agg": "mnn", "m": 3, "distance": "cosine",
            "weighting": "uniform", "kmeans_backend": "auto", "lam": None, "status": "ok", "run_hash": f"h{gen}{k}",
            "acc": np.float64(acc), "macro_f1": 0.8, "balanced_acc": 0.85, "gen_s": 0.01, "infer_s": 0.002,
            "n_proxies": 40, "nc1": float("nan"), "error": ""}
    return {**base, **extra}


def cli(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "IMPRINT_BENCH_ROOT": str(root), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
                "WANDB_SILENT": "true", **(env or {})}
    return subprocess.run([sys.executable, "-m", "imprint_bench", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=600)


def wandb_records(run_file: Path) -> list:
    """The protobuf records of an offline ``.wandb`` file (a LevelDB-style log: 7-byte file header, 32 KiB blocks
    of chunks, each with a 7-byte header: checksum, length, type 1 full / 2 first / 3 middle / 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos, chunks, records = run_file.read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if left < 7 or (length == 0 and kind == 0):
            pos += left
            continue
        chunks += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            records.append(record)
            chunks = b""
    return records


def wandb_runs(out: Path) -> list[dict]:
    """Each offline run under ``out/wandb``: job type, name, group, config and summary as Python values."""
    runs = []
    for run_file in sorted(out.glob("wandb/offline-run-*/*.wandb")):
        run = {"config": {}, "summary": {}}
        for record in wandb_records(run_file):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run.update(job_type=record.run.job_type, name=record.run.display_name, group=record.run.run_group)
                updates = record.run.config.update
            elif kind in ("config", "summary"):
                updates = getattr(record, kind).update
            else:
                continue
            target = run["summary"] if kind == "summary" else run["config"]
            target.update({u.key: json.loads(u.value_json) for u in updates if u.key and not u.key.startswith("_")})
        runs.append(run)
    return runs


def test_configuration_fields_are_plain_values_and_missing_metrics_are_left_out():
    fields = configuration_fields(row(seed=7, k=5))
    assert set(STAGES) <= set(fields) == set(FIELDS)
    assert fields["seed"] == 7 and type(fields["seed"]) is int and type(fields["k"]) is int
    metrics = configuration_metrics(row(acc=91.5))
    assert metrics["acc"] == 91.5 and "nc1" not in metrics and set(SUMMARY) <= set(metrics)
    assert configuration_metrics(row(acc=float("nan"), status="failed")).get("acc") is None


def test_mlflow_key_keeps_what_mlflow_accepts():
    assert mlflow_key("report/table1/L2/k-means(k=5)/max/avg_acc") == "report/table1/L2/k-means_k_5_/max/avg_acc"
    assert mlflow_key("report/n_ok") == "report/n_ok"


def test_an_unknown_tracker_names_the_valid_ones(compose_cfg, tmp_path):
    cfg = compose_cfg(f"paths.root={tmp_path}", "tracker.name=neptune")
    with pytest.raises(ConfigError, match="unknown tracker 'neptune'; valid choices: mlflow, none, wandb"):
        make_tracker(cfg, "imprint")


def test_wandb_offline_writes_one_run_per_configuration_with_its_fields(compose_cfg, tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose_cfg(f"paths.root={tmp_path}", "tracker=wandb", "experiment_name=exp", "gen=mean")
    tracker = make_tracker(cfg, "imprint")
    for k in (1, 5, 20):
        tracker.log_row(row(k=k, acc=80.0 + k))
    tracker.log_row(row(gen="fps", k=5, acc=float("nan"), status="failed", error="ValueError: boom"))
    tracker.finish()
    wandb.teardown()  # the W&B service writes the run files; it flushes them when it stops
    runs = wandb_runs(tmp_path / "outputs")
    assert len(runs) == 4
    assert {r["job_type"] for r in runs} == {"configuration"} and {r["group"] for r in runs} == {"exp"}
    by_key = {(r["config"]["gen"], r["config"]["k"]): r for r in runs}
    # the configuration's own options, not the job's base config (gen=mean)
    assert set(by_key) == {("kmeans", 1), ("kmeans", 5), ("kmeans", 20), ("fps", 5)}
    assert {s: by_key["kmeans", 5]["config"][s] for s in STAGES} == {s: v.item() if hasattr(v, "item") else v
                                                                        for s, v in row(k=5).items() if s in STAGES}
    assert by_key["kmeans", 20]["summary"]["acc"] == 100.0 and set(SUMMARY) <= set(by_key["kmeans", 20]["summary"])
    assert by_key["fps", 5]["config"]["status"] == "failed" and "acc" not in by_key["fps", 5]["summary"]
    assert by_key["fps", 5]["summary"]["error"] == "ValueError: boom"


def test_mlflow_nests_every_jobs_configurations_under_one_experiment_run(compose_cfg, tmp_path):
    import mlflow

    cfg = compose_cfg(f"paths.root={tmp_path}", "tracker=mlflow", "experiment_name=exp")
    for job_gen in ("kmeans", "fps"):  # two jobs of one sweep
        tracker = make_tracker(cfg, "imprint")
        tracker.log_row(row(gen=job_gen, k=5, acc=70.0))
        tracker.log_row(row(gen=job_gen, k=10, acc=75.0))
        tracker.finish()
    image = tmp_path / "cd.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    step = make_tracker(cfg, "collect")
    step.log_summary({"report/table1/L2/k-means(k=5)/max/avg_acc": 81.5, "report/path": "/x/report.md"})
    step.log_table("report/table1", pd.DataFrame({"label": ["qi"], "avg_acc": [80.0]}))
    step.log_image("report/cd_all", image)
    step.finish()

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["imprint_bench"])
    parent = runs[runs["tags.imprint_bench_role"] == "experiment"]
    assert list(parent["tags.mlflow.runName"]) == ["exp"]
    children = runs[runs["tags.imprint_bench_role"] != "experiment"]
    assert set(children["tags.mlflow.parentRunId"]) == set(parent["run_id"])
    configurations = children[children["tags.imprint_bench_role"] == "configuration"]
    assert sorted(zip(configurations["params.gen"], configurations["params.k"], strict=True)) == [
        ("fps", "10"), ("fps", "5"), ("kmeans", "10"), ("kmeans", "5")]
    assert all(f"params.{s}" in runs for s in STAGES) and all(f"metrics.{m}" in runs for m in SUMMARY)
    assert set(configurations["params.task"]) == {"even"} and set(configurations["metrics.acc"]) == {70.0, 75.0}
    collect = children[children["tags.imprint_bench_role"] == "collect"].iloc[0]
    assert collect["tags.mlflow.runName"] == "exp-collect"
    assert collect["metrics.report/table1/L2/k-means_k_5_/max/avg_acc"] == 81.5
    assert collect["tags.report/path"] == "/x/report.md"
    client = mlflow.MlflowClient()
    assert {a.path for a in client.list_artifacts(collect["run_id"], "report")} == {"report/table1.csv",
                                                                                  "report/cd.png"}


def test_a_tracker_that_cannot_write_is_a_config_error(compose_cfg, tmp_path):
    (tmp_path / "file").write_text("")  # a file where the store's folder would be
    cfg = compose_cfg(f"paths.root={tmp_path}", "tracker=mlflow", f"tracker.tracking_uri=sqlite:///{tmp_path}/file/db")
    with pytest.raises(ConfigError, match=r"tracker=mlflow cannot write into .*/file \(File exists\); set tracker"):
        make_tracker(cfg, "imprint")  # before any work: the store is written only when the job ends


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [(), ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")])
def test_a_wandb_offline_sweep_logs_its_configurations_and_the_collect_run(tmp_path, launcher):
    out = cli(tmp_path, *TINY_SWEEP, "tracker=wandb", *launcher, env={"WANDB_MODE": "offline"})
    assert out.returncode == 0, out.stderr
    assert "InterpolationToMissingValueError" not in out.stderr + out.stdout
    runs = wandb_runs(tmp_path / "outputs")
    configurations = [r for r in runs if r["job_type"] == "configuration"]
    assert sorted((r["config"]["method"], r["config"]["seed"]) for r in configurations) == [
        ("ours", 1), ("ours", 2), ("qi", 1), ("qi", 2)]
    assert all(set(STAGES) <= set(r["config"]) and set(SUMMARY) <= set(r["summary"]) for r in configurations)
    collect = [r for r in runs if r["job_type"] == "collect"]
    assert len(collect) == 1 and collect[0]["name"] == "adhoc-collect" and collect[0]["summary"]["report/n_ok"] == 4


@pytest.mark.slow
def test_an_mlflow_sweep_of_parallel_jobs_shares_one_parent_and_logs_the_report(tmp_path):
    import mlflow

    out = cli(tmp_path, *TINY_SWEEP, "dataset.seed=0,1", "tracker=mlflow", "hydra/launcher=joblib",
              "hydra.launcher.n_jobs=2")
    assert out.returncode == 0, out.stderr
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["imprint_bench"])
    roles = runs["tags.imprint_bench_role"].value_counts().to_dict()
    assert roles == {"configuration": 8, "experiment": 1, "collect": 1}
    parent_id = runs.loc[runs["tags.imprint_bench_role"] == "experiment", "run_id"].item()
    assert set(runs["tags.mlflow.parentRunId"].dropna()) == {parent_id}
    collect_id = runs.loc[runs["tags.imprint_bench_role"] == "collect", "run_id"].item()
    client = mlflow.MlflowClient()
    tables = {a.path for a in client.list_artifacts(collect_id, "report/tables")}
    figures = {a.path for a in client.list_artifacts(collect_id, "report/figures")}
    assert "report/tables/table1.csv" in tables and "report/figures/table1.png" in figures


@pytest.mark.slow
def test_a_failed_collect_at_the_end_of_a_sweep_fails_the_command(tmp_path):
    blocked = tmp_path / "outputs" / "results" / "adhoc" / "results.parquet"
    blocked.mkdir(parents=True)  # a folder where collect must write the merged table
    out = cli(tmp_path, *TINY_SWEEP)
    assert out.returncode == 2
    assert "sweep finished: 1 jobs reported, 4 runs done" in out.stdout
    assert out.stderr.strip().splitlines()[-1].startswith("error: collecting the sweep failed: cannot write "
                                                          "results.parquet to ")
    assert "Is a directory" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_the_mlflow_ui_serves_a_store_written_by_the_tracker(tmp_path):
    """`make dashboard`'s server (the same MLflow version as the writer) lists the experiment's runs with their
    stage parameters and metrics through its REST API."""
    import json
    import socket
    import time
    import urllib.request
    from importlib.metadata import version

    makefile = (ROOT / "Makefile").read_text()
    assert f"MLFLOW_VERSION := {version('mlflow-skinny')}" in makefile  # the UI is the writer's version
    mlflow_ui = ROOT / ".venv-dashboard" / "bin" / "mlflow"
    assert mlflow_ui.is_file(), "make test installs the MLflow UI into .venv-dashboard (make dashboard does too)"
    out = cli(tmp_path, *TINY_SWEEP, "tracker=mlflow")
    assert out.returncode == 0, out.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(mlflow_ui), "server", "--backend-store-uri",
                               f"sqlite:///{tmp_path}/outputs/mlflow.db", "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        api = f"http://127.0.0.1:{port}/api/2.0/mlflow"
        deadline = time.time() + 120
        while True:
            try:
                found = json.load(urllib.request.urlopen(f"{api}/experiments/get-by-name?experiment_name=imprint_bench",
                                                         timeout=5))
                break
            except OSError:
                assert time.time() < deadline and server.poll() is None, server.stderr.read() if server.poll() else ""
                time.sleep(0.5)
        request = urllib.request.Request(
            f"{api}/runs/search", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"experiment_ids": [found["experiment"]["experiment_id"]], "max_results": 100}).encode())
        runs = json.load(urllib.request.urlopen(request, timeout=10))["runs"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    configurations = [r for r in runs if {"key": "imprint_bench_role", "value": "configuration"} in r["data"]["tags"]]
    assert len(configurations) == 4
    params = {p["key"]: p["value"] for p in configurations[0]["data"]["params"]}
    metrics = {m["key"] for m in configurations[0]["data"]["metrics"]}
    assert {"gen", "k", "norm_pre", "agg", "method", "seed"} <= set(params) and {"acc", "gen_s"} <= metrics
