"""Smoke test of scripts/bench.py: the quick engine and k-means suites run and write a complete report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GRID_KEYS = {
    "runs",
    "gen_computed",
    "wall_s",
    "runs_per_s",
    "task_s",
    "gen_s",
    "infer_s",
    "other_s",
    "by_method",
    "host_peak_mib",
    "device_peak_mib",
}


@pytest.mark.slow
def test_quick_bench_writes_json_and_markdown(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    done = subprocess.run(
        [
            sys.executable,
            "scripts/bench.py",
            "--quick",
            "--suite",
            "engine,kmeans",
            "--device",
            "cpu",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "bench_cpu_quick.json").read_text())
    assert (tmp_path / "bench_cpu_quick.md").read_text().startswith("# imprint_bench benchmark")
    assert "## cpu" in done.stdout

    meta = report["meta"]
    assert meta["complete"] and meta["quick"] and meta["devices"] == ["cpu"]
    assert meta["cpu_count"] >= 1 and meta["date"] and meta["total_s"] > 0
    assert {"python", "torch", "numpy"} <= set(meta["versions"])
    assert report["targets"] == []  # targets are stated for full sizes only

    engine = report["results"]["cpu"]["engine"]
    table1, aggfixed = engine["table1"], engine["aggfixed"]
    assert set(table1) >= GRID_KEYS and set(aggfixed) >= GRID_KEYS
    assert table1["runs"] == 5 * 4 * 3 and set(table1["by_method"]) == {"qi", "hosoda", "janson", "ours", "oracle"}
    assert 0 < table1["gen_computed"] < table1["runs"]  # proxies are shared across splits
    assert aggfixed["runs"] > aggfixed["gen_computed"] > 0
    for grid in (table1, aggfixed, *engine["k_sweep"], *engine["train_sweep"]):
        assert grid["runs_per_s"] > 0 and grid["wall_s"] > 0
    assert [row["k"] for row in engine["k_sweep"]] == [1, 5]

    backends = report["results"]["cpu"]["kmeans"]["backends"]
    assert {row["backend"] for row in backends} >= {"torch", "sklearn"}
    for row in backends:
        assert row["seconds"] > 0 and row["inertia_rel_mean"] > 0
