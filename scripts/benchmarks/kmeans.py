"""k-means suite: the per-class k-means problems of ``ours`` with every installed backend: time, and inertia
relative to sklearn's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from tqdm.auto import tqdm

from imprint_bench.data.tasks import make_task
from imprint_bench.imprint.cluster import inertia, kmeans
from imprint_bench.imprint.pipeline import Workspace
from imprint_bench.imprint.spec import KMEANS_BACKENDS
from imprint_bench.rng import derive_seed

from .common import FeatureBank, Meter, Sizes, has_module, load_experiment, md_table

BACKEND_MODULES = {"faiss": "faiss", "torch": "torch", "sklearn": "sklearn"}  # k-means backend → its module


def runs_on(backend: str, device: torch.device) -> str:
    """Where a k-means backend computes for data on ``device`` (faiss uses the GPU only with faiss-gpu)."""
    if backend == "torch":
        return device.type
    if backend == "sklearn":
        return "cpu"
    import faiss

    gpu = device.type == "cuda" and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    return "gpu" if gpu else "cpu"


def kmeans_suite(device: torch.device, sizes: Sizes, bank: FeatureBank) -> Iterator[tuple[str, Any]]:
    """The per-class k-means problems of ``ours`` (L2-normalised train rows of each class, k centroids) with
    every backend: time, and inertia relative to sklearn's per class (mean, min, max over classes)."""
    backends = [b for b in KMEANS_BACKENDS if b != "auto" and has_module(BACKEND_MODULES[b])]
    seed = load_experiment("table1").seeds[0]
    rows = []
    for per_class, dim in sizes.kmeans_shapes:
        features = bank.get(per_class, sizes.test_per_class, dim, device)
        task = make_task(features, "all", None, -1, seed)
        xs = Workspace(task, seed).train_normed("l2")
        seeds = [derive_seed(seed, "kmeans", label) for label in task.labels]
        inertias: dict[str, list[float]] = {}
        for backend in tqdm(backends, desc=f"k-means {per_class}×{dim}", leave=False):
            with Meter(device) as meter:
                centers = kmeans(xs, sizes.kmeans_k, seeds, backend)
            inertias[backend] = [inertia(x, c) for x, c in zip(xs, centers, strict=True)]
            rows.append(
                {
                    "dim": dim,
                    "classes": len(xs),
                    "rows_per_class": int(xs[0].shape[0]),
                    "k": sizes.kmeans_k,
                    "backend": backend,
                    "runs_on": runs_on(backend, device),
                    "seconds": round(meter.seconds, 3),
                    **meter.summary(),
                }
            )
        reference = inertias.get("sklearn")
        for row in rows[-len(backends) :] if reference is not None else []:
            ratios = [a / b for a, b in zip(inertias[row["backend"]], reference, strict=True)]
            row.update(
                inertia_rel_mean=round(sum(ratios) / len(ratios), 5),
                inertia_rel_min=round(min(ratios), 5),
                inertia_rel_max=round(max(ratios), 5),
            )
    yield "backends", rows


def ratio(value: float | None) -> str | None:
    return None if value is None else f"{value:.4f}"


def render_kmeans(r: dict[str, Any]) -> list[str]:
    lines = ["### k-means backends (per-class problems of `ours`: L2-normalised rows, one seed per class)", ""]
    lines += md_table(
        [
            "d",
            "classes × rows",
            "k",
            "backend",
            "runs on",
            "seconds",
            "CPU s",
            "inertia / sklearn (mean)",
            "min",
            "max",
            "host peak MiB",
            "device peak MiB",
        ],
        [
            [
                row["dim"],
                f"{row['classes']} × {row['rows_per_class']:,}",
                row["k"],
                row["backend"],
                row["runs_on"],
                row["seconds"],
                row["cpu_s"],
                *(ratio(row.get(f"inertia_rel_{stat}")) for stat in ("mean", "min", "max")),
                row["host_peak_mib"],
                row["device_peak_mib"],
            ]
            for row in r.get("backends", [])
        ],
    )
    return lines
