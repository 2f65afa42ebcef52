"""Memory suite: peak host and device memory of each Table-1 method alone, and of the largest head."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from tqdm.auto import tqdm

from imprint_bench.imprint.spec import PRESETS, AggSpec, GenSpec, MethodSpec

from .common import MIB, FeatureBank, Sizes, load_experiment, md_table
from .engine import gen_label, time_grid


def memory_suite(device: torch.device, sizes: Sizes, bank: FeatureBank) -> Iterator[tuple[str, Any]]:
    """Peak memory of each Table-1 method alone on the MNIST-sized ``all`` task (fresh cache), and of a max
    head over every train row (the largest head of the aggfixed grid), next to the features' own size."""
    features = bank.mnist(device)
    nominal = sum(
        t.numel() * t.element_size() for t in (features.x_train, features.y_train, features.x_test, features.y_test)
    )
    yield (
        "features",
        {
            "train_rows": int(features.x_train.shape[0]),
            "test_rows": int(features.x_test.shape[0]),
            "dim": features.dim,
            "resident_mib": round(nominal / MIB, 1),
            "on": device.type,
        },
    )
    seed = load_experiment("table1").seeds[:1]
    methods = {**PRESETS, "all-samples (max)": MethodSpec("l2", GenSpec("all", -1), "l2", "l2", AggSpec())}
    rows = []
    for name, spec in tqdm(methods.items(), desc="memory", leave=False):
        result = time_grid(features, [spec.canonical()], ["all"], seed, device, name, gen_label)
        rows.append(
            {
                "method": name,
                "seconds": result["wall_s"],
                **{k: result[k] for k in ("cpu_s", "host_peak_mib", "host_delta_mib", "device_peak_mib")},
            }
        )
    yield "methods", rows


def render_memory(r: dict[str, Any]) -> list[str]:
    lines = ["### Peak memory per method (MNIST-sized task all, fresh cache)", ""]
    if "features" in r:
        f = r["features"]
        lines += [
            f"Features resident on {f['on']}: {f['train_rows']:,} + {f['test_rows']:,} rows × {f['dim']:,} "
            f"= {f['resident_mib']:,} MiB.",
            "",
        ]
    lines += md_table(
        ["method", "seconds", "CPU s", "host peak MiB", "host +MiB over start", "device peak MiB"],
        [
            [
                row["method"],
                row["seconds"],
                row["cpu_s"],
                row["host_peak_mib"],
                row["host_delta_mib"],
                row["device_peak_mib"],
            ]
            for row in r.get("methods", [])
        ],
    )
    return lines
