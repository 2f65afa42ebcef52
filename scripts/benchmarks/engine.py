"""Engine suite: the Table-1 and aggfixed method grids on one synthetic MNIST-sized cell, timed by stage, and how
the time grows with the train size and with k."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import torch
from tqdm.auto import tqdm

from imprint_bench.data.base import FeatureSet
from imprint_bench.data.tasks import TASK_SPLITS, make_task
from imprint_bench.grid import prune_for_task
from imprint_bench.imprint.pipeline import ProxyCache, Workspace
from imprint_bench.imprint.spec import PRESETS, MethodSpec, preset_name

from .common import N_CLASSES, FeatureBank, Meter, Sizes, load_experiment, md_table, runnable, synchronize

LAMBDA = 1e-4  # ridge λ of the ls oracle (resnet's table value; the cost does not depend on it)
TABLE1_TARGET_S = 60.0  # Table-1 grid on one cell, MNIST-sized features, CPU


def n_task_classes(task: str) -> int:
    classes = TASK_SPLITS[task]
    return N_CLASSES if classes is None else len(classes)


def time_grid(
    features: FeatureSet,
    specs: list[MethodSpec],
    tasks: list[str],
    seeds: list[int],
    device: torch.device,
    label: str,
    group: Callable[[MethodSpec], str],
) -> dict[str, Any]:
    """Evaluate ``specs`` on every (task, seed) of ``features`` with a fresh ProxyCache, as the runner does.

    Wall time splits into task building (``make_task`` + ``Workspace``), GEN (``Workspace.proxies``: real work,
    or a cache hit for proxies shared across splits/NORM/AGG variants), inference (``infer_s`` of
    ``Workspace.evaluate``) and the rest (NORM, NORMpost, metrics). A run "computes GEN" when its proxies
    were not in the cache yet. A failing configuration is recorded and skipped, as the runner does.
    """
    cache = ProxyCache()
    plans = {task: prune_for_task([runnable(s) for s in specs], n_task_classes(task))[0] for task in tasks}
    totals = {"runs": 0, "gen_computed": 0, "task_s": 0.0, "gen_s": 0.0, "infer_s": 0.0}
    by_group: dict[str, dict[str, float]] = {}
    failures: list[str] = []
    n_runs = sum(len(plans[task]) for task in tasks) * len(seeds)
    with Meter(device) as meter, tqdm(total=n_runs, desc=label, unit="run", leave=False) as bar:
        for task_name in tasks:
            for seed in seeds:
                start = time.perf_counter()
                task = make_task(features, task_name, TASK_SPLITS[task_name], -1, seed)
                workspace = Workspace(task, seed, LAMBDA, features.key, cache)
                synchronize(device)
                totals["task_s"] += time.perf_counter() - start
                for spec in plans[task_name]:
                    bar.update()
                    misses = cache.misses
                    try:
                        start = time.perf_counter()
                        workspace.proxies(spec)
                        synchronize(device)
                        gen_s = time.perf_counter() - start
                        result = workspace.evaluate(spec)
                    except Exception as err:  # one failing configuration must not stop the benchmark
                        failures.append(f"{task_name}/{seed} {spec.to_flat()}: {type(err).__name__}: {err}")
                        continue
                    computed = int(cache.misses > misses)
                    row = by_group.setdefault(
                        group(spec), {"runs": 0, "gen_computed": 0, "gen_s": 0.0, "infer_s": 0.0, "acc_sum": 0.0}
                    )
                    for target in (totals, row):
                        target["runs"] += 1
                        target["gen_computed"] += computed
                        target["gen_s"] += gen_s
                        target["infer_s"] += result["infer_s"]
                    row["acc_sum"] += result["acc"]
    wall = meter.seconds
    return {
        "train_rows": int(features.x_train.shape[0]),
        "test_rows": int(features.x_test.shape[0]),
        "dim": features.dim,
        "tasks": tasks,
        "seeds": seeds,
        "configs_per_task": {task: len(plans[task]) for task in tasks},
        "runs": totals["runs"],
        "failed": len(failures),
        "failures": failures[:5],
        "gen_computed": totals["gen_computed"],
        "proxy_cache_misses": cache.misses,
        "wall_s": round(wall, 3),
        "runs_per_s": round(totals["runs"] / wall, 3),
        "task_s": round(totals["task_s"], 3),
        "gen_s": round(totals["gen_s"], 3),
        "infer_s": round(totals["infer_s"], 3),
        "other_s": round(wall - totals["task_s"] - totals["gen_s"] - totals["infer_s"], 3),
        "by_method": {
            name: {
                "runs": int(row["runs"]),
                "gen_computed": int(row["gen_computed"]),
                "gen_s": round(row["gen_s"], 3),
                "infer_s": round(row["infer_s"], 3),
                "mean_acc": round(row["acc_sum"] / row["runs"], 2),
            }
            for name, row in by_group.items()
        },
        **meter.summary(),
    }


def gen_label(spec: MethodSpec) -> str:
    return spec.gen.name


def engine_suite(device: torch.device, sizes: Sizes, bank: FeatureBank) -> Iterator[tuple[str, Any]]:
    """(a) Table-1 grid on one cell, (b) the aggfixed grid on one task and seed, then how the time of the
    five Table-1 methods grows with the train size and the time of ``ours`` with k."""
    table1 = load_experiment("table1")
    features = bank.mnist(device)
    result = time_grid(features, table1.plan.specs, table1.tasks, table1.seeds, device, "engine: table1", preset_name)
    result["target_s"] = TABLE1_TARGET_S if device.type == "cpu" else None
    yield "table1", result

    aggfixed = load_experiment("aggfixed")
    small = bank.get(sizes.aggfixed_train_per_class, sizes.aggfixed_test_per_class, sizes.dim, device)
    result = time_grid(small, aggfixed.plan.specs, ["all"], aggfixed.seeds[:1], device, "engine: aggfixed", gen_label)
    result.update(
        combinations=aggfixed.plan.n_combinations,
        duplicates=aggfixed.plan.n_duplicates,
        pruned=sum(aggfixed.plan.pruned.values()),
        all_sample_configs=sum(1 for s in aggfixed.plan.specs if s.gen.k == -1),
    )
    yield "aggfixed", result

    seed = table1.seeds[:1]
    ours = PRESETS["ours"]
    k_rows = []
    for k in tqdm(sizes.k_sweep, desc="engine: k sweep", leave=False):
        spec = replace(ours, gen=replace(ours.gen, k=k)).canonical()
        k_rows.append({"k": k, **time_grid(features, [spec], ["all"], seed, device, f"k={k}", gen_label)})
    yield "k_sweep", k_rows

    size_rows = []
    for per_class, dim in tqdm(sizes.train_sweep, desc="engine: train-size sweep", leave=False):
        sized = bank.get(per_class, sizes.test_per_class, dim, device)
        size_rows.append(
            time_grid(sized, table1.plan.specs, ["all"], seed, device, f"{per_class * N_CLASSES} rows", preset_name)
        )
    yield "train_sweep", size_rows


def grid_rows(name: str, r: dict[str, Any]) -> list[Any]:
    return [
        name,
        f"{r['train_rows']:,} × {r['dim']:,}",
        r["test_rows"],
        ",".join(r["tasks"]),
        len(r["seeds"]),
        r["runs"],
        r["gen_computed"],
        r["wall_s"],
        r["cpu_s"],
        r["runs_per_s"],
        r["task_s"],
        r["gen_s"],
        r["infer_s"],
        r["other_s"],
        r["host_peak_mib"],
        r["device_peak_mib"],
    ]


GRID_HEADERS = [
    "grid",
    "train rows × d",
    "test rows",
    "tasks",
    "seeds",
    "runs",
    "GEN computed",
    "wall s",
    "CPU s",
    "runs/s",
    "task build s",
    "GEN s",
    "inference s",
    "other s",
    "host peak MiB",
    "device peak MiB",
]


def render_engine(r: dict[str, Any]) -> list[str]:
    lines = ["### Engine", ""]
    grids = [(k, r[k]) for k in ("table1", "aggfixed") if k in r]
    lines += md_table(GRID_HEADERS, [grid_rows(name, g) for name, g in grids])
    lines += [f"**{name}: {g['failed']} runs failed**, e.g. `{g['failures'][0]}`" for name, g in grids if g["failed"]]
    if "table1" in r:
        lines += ["Table-1 grid by method (GEN computed = runs whose proxies were not in the cache):", ""]
        lines += md_table(
            ["method", "runs", "GEN computed", "GEN s", "inference s", "mean acc %"],
            [
                [m, v["runs"], v["gen_computed"], v["gen_s"], v["infer_s"], v["mean_acc"]]
                for m, v in r["table1"]["by_method"].items()
            ],
        )
    if "aggfixed" in r:
        a = r["aggfixed"]
        if "table1" in r and a["train_rows"] < r["table1"]["train_rows"]:
            lines += [
                f"The aggfixed cell was measured on {a['train_rows']:,} train and {a['test_rows']:,} test rows "
                "(a fraction of MNIST's) to fit the run's time budget on this device.",
                "",
            ]
        lines += [
            f"aggfixed grid: {a['combinations']} combinations → {a['runs']} distinct configurations "
            f"({a['duplicates']} duplicates, {a['pruned']} invalid pruned); {a['gen_computed']} GEN "
            f"computations for {a['runs']} runs; {a['all_sample_configs']} configurations use every train "
            "row as a proxy.",
            "",
        ]
        lines += md_table(
            ["GEN", "runs", "GEN computed", "GEN s", "inference s"],
            [[m, v["runs"], v["gen_computed"], v["gen_s"], v["infer_s"]] for m, v in a["by_method"].items()],
        )
    if "k_sweep" in r:
        lines += ["`ours` (kmeans, l2/l2/l2, max) by k, task all, one seed:", ""]
        lines += md_table(
            ["k", "train rows × d", "wall s", "CPU s", "GEN s", "inference s", "host peak MiB", "device peak MiB"],
            [
                [
                    row["k"],
                    f"{row['train_rows']:,} × {row['dim']:,}",
                    row["wall_s"],
                    row["cpu_s"],
                    row["gen_s"],
                    row["infer_s"],
                    row["host_peak_mib"],
                    row["device_peak_mib"],
                ]
                for row in r["k_sweep"]
            ],
        )
    if "train_sweep" in r:
        lines += [
            "The five Table-1 methods by train size, task all, one seed. The largest size is measured at a "
            "smaller d only (at d = 2,048 it would hold several 4.7 GiB copies of the train rows); the "
            "middle size at both d links the two series:",
            "",
        ]
        lines += md_table(
            [
                "train rows × d",
                "wall s",
                "CPU s",
                "task build s",
                "GEN s",
                "inference s",
                "other s",
                "ours GEN s",
                "oracle GEN s",
                "host peak MiB",
                "device peak MiB",
            ],
            [
                [
                    f"{row['train_rows']:,} × {row['dim']:,}",
                    row["wall_s"],
                    row["cpu_s"],
                    row["task_s"],
                    row["gen_s"],
                    row["infer_s"],
                    row["other_s"],
                    row["by_method"].get("ours", {}).get("gen_s"),
                    row["by_method"].get("oracle", {}).get("gen_s"),
                    row["host_peak_mib"],
                    row["device_peak_mib"],
                ]
                for row in r["train_sweep"]
            ],
        )
    return lines
