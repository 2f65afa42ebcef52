"""Shared fixtures: offline environment, small synthetic feature sets, Hydra compose helper."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path

import numpy as np
import pytest
import torch

from imprint_bench.data.base import FeatureSet
from imprint_bench.data.synthetic import make_mixture


@pytest.fixture
def mixture() -> FeatureSet:
    """10 classes × 4 well-separated modes in 32-d: multi-proxy imprinting must beat the mean."""
    return make_mixture(n_classes=10, modes=4, dim=32, n_train_per_class=120, n_test_per_class=60, spread=3.0,
                        noise=1.0, seed=0)


@pytest.fixture
def npz_file(tmp_path: Path, mixture: FeatureSet) -> Path:
    """The mixture written as a bring-your-own-embeddings .npz file."""
    path = tmp_path / "emb.npz"
    np.savez(path, X_train=mixture.x_train.numpy(), y_train=mixture.y_train.numpy(),
             X_test=mixture.x_test.numpy(), y_test=mixture.y_test.numpy(),
             class_names=np.array([f"c{i}" for i in range(10)]))
    return path


@pytest.fixture
def compose_cfg():
    """Compose the project's Hydra config with overrides (no job is run)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from imprint_bench.config import CONFIG_MODULE

    def _compose(*overrides: str, return_hydra_config: bool = False):
        GlobalHydra.instance().clear()
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            return compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)

    yield _compose
    GlobalHydra.instance().clear()


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def own_cell(job):
    """(cell, grid plan) of a planned job of one cell."""
    return job.cells[0].cell, job.cells[0].plan


def kill_after_parts(root: Path, args: tuple[str, ...], experiment: str, parts: int = 2) -> int:
    """Start ``imprint-bench *args`` under ``root``, SIGKILL it once ``parts`` Parquet parts of ``experiment`` exist,
    and return the rows they hold (every part must be readable: written atomically)."""
    import signal
    import subprocess
    import sys
    import time

    import pandas as pd

    env = {**os.environ, "IMPRINT_BENCH_ROOT": str(root), "WANDB_MODE": "disabled"}
    runs = root / "outputs" / "results" / experiment / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "imprint_bench", *args], cwd=Path(__file__).resolve().parent.parent,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(runs.glob("*/*.parquet"))) < parts:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return sum(len(pd.read_parquet(p)) for p in runs.glob("*/*.parquet"))
