"""Benchmark imprint_bench: engine throughput, k-means backends, feature extraction and peak memory.

    python scripts/bench.py [--suite engine,kmeans,extract,memory] [--device auto|cpu|cuda] [--quick] [--out DIR]

Every suite runs on the CPU and, with ``--device auto`` (the default) or ``cuda``, on CUDA too. The report
(environment, library versions, date, CPU count, every measurement with its wall time and peak host/device
memory, and the targets met or missed) is written as ``bench_<devices>[_quick].json`` and ``.md`` under
``--out`` (default ``outputs/bench``) after every measurement, so a run cut short keeps what it measured;
the Markdown is printed at the end. ``--quick`` uses tiny sizes (smoke test); its numbers mean nothing.

Features are synthetic Gaussian mixtures of MNIST's shape (10 classes × 4 modes; 60,000 × 2,048 train and
10,000 test rows), so the engine's cost is measured without any dataset or network access.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from imprint_bench.backbones import Backbone, load_backbone
from imprint_bench.config import config_dir
from imprint_bench.data.base import FeatureSet
from imprint_bench.data.synthetic import make_mixture
from imprint_bench.data.tasks import TASK_SPLITS, make_task
from imprint_bench.grid import GridPlan, expand_grid, prune_for_task
from imprint_bench.imprint.cluster import inertia, kmeans
from imprint_bench.imprint.pipeline import ProxyCache, Workspace
from imprint_bench.imprint.rng import derive_seed
from imprint_bench.imprint.spec import KMEANS_BACKENDS, PRESETS, AggSpec, GenSpec, MethodSpec, preset_name

ROOT = Path(__file__).resolve().parent.parent
SUITE_NAMES = ("engine", "kmeans", "extract", "memory")
MIB = float(1 << 20)
N_CLASSES = 10
MODES = 4
LAMBDA = 1e-4  # ridge λ of the ls oracle (resnet's table value; the cost does not depend on it)
TABLE1_TARGET_S = 60.0  # Table-1 grid on one cell, MNIST-sized features, CPU
RUN_TARGET_S = 600.0  # the whole default CPU run
BACKBONES = ("resnet18", "resnet50", "vit_b_16", "swin_b", "efficientnet_lite0")
HEAVY_BACKBONES = ("vit_b_16", "swin_b")  # ~4 img/s on 2 CPU cores: measured on fewer images there
THREAD_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
BACKEND_MODULES = {"faiss": "faiss", "torch": "torch", "sklearn": "sklearn"}  # k-means backend → its module
VERSIONED = (
    "torch",
    "torchvision",
    "timm",
    "faiss-cpu",
    "faiss-gpu",
    "numpy",
    "scikit-learn",
    "omegaconf",
    "imprint-bench",
)


# --------------------------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of one device's run. Train/test sizes are rows per class (10 classes)."""

    train_per_class: int  # the MNIST-sized cell: 6,000 × 10 train rows
    test_per_class: int
    dim: int
    aggfixed_train_per_class: int
    aggfixed_test_per_class: int
    train_sweep: tuple[tuple[int, int], ...]  # (train rows per class, dim)
    k_sweep: tuple[int, ...]
    kmeans_shapes: tuple[tuple[int, int], ...]  # (rows per class, dim) of the k-means suite
    kmeans_k: int
    extract_images: int
    extract_images_heavy: int
    extract_batch: int
    warmup_images: int


FULL = Sizes(
    train_per_class=6000,
    test_per_class=1000,
    dim=2048,
    # the MNIST-sized aggfixed cell does not fit the 10-minute budget on 2 CPU cores (k-medoids alone, with
    # 10 classes × 6k² distances in 2,048-d per GEN, took ~30 s per GEN × 12 GENs): the CPU measures 1/10 of it
    aggfixed_train_per_class=600,
    aggfixed_test_per_class=100,
    train_sweep=((600, 2048), (6000, 2048), (600, 256), (6000, 256), (60000, 256)),
    k_sweep=(1, 5, 20, 50),
    # MNIST-sized classes, and the 1,300–6,000-row × 1,280-d feature sets of the end-to-end suite
    kmeans_shapes=((6000, 2048), (6000, 512), (600, 1280), (130, 1280)),
    kmeans_k=20,
    extract_images=64,
    extract_images_heavy=32,
    extract_batch=32,
    warmup_images=4,
)
FULL_CUDA = replace(
    FULL,
    aggfixed_train_per_class=6000,
    aggfixed_test_per_class=1000,
    extract_images=1024,
    extract_images_heavy=1024,
    extract_batch=256,
    warmup_images=256,
)
QUICK = Sizes(
    train_per_class=60,
    test_per_class=20,
    dim=64,
    aggfixed_train_per_class=30,
    aggfixed_test_per_class=10,
    train_sweep=((20, 64), (60, 64), (200, 16)),
    k_sweep=(1, 5),
    kmeans_shapes=((60, 64), (60, 16)),
    kmeans_k=5,
    extract_images=4,
    extract_images_heavy=2,
    extract_batch=2,
    warmup_images=2,
)


def sizes_for(device: torch.device, quick: bool) -> Sizes:
    if quick:
        return QUICK
    return FULL_CUDA if device.type == "cuda" else FULL


# --------------------------------------------------------------------------------------------- measuring


class HostMemory:
    """Resident memory of this process. The peak is VmHWM, reset before each measurement through
    ``/proc/self/clear_refs`` (Linux); elsewhere the lifetime ``ru_maxrss``, whose growth during a
    block is only a lower bound of that block's peak."""

    def __init__(self) -> None:
        self.resettable = self.reset_peak()
        self.method = "VmHWM reset per measurement" if self.resettable else "ru_maxrss (process lifetime peak)"

    def reset_peak(self) -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    @staticmethod
    def _status_mib(field: str) -> float | None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    return float(line.split()[1]) / 1024.0  # kB
        except OSError:
            pass
        return None

    @staticmethod
    def _maxrss_mib() -> float:
        scale = 1.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / MIB

    def current_mib(self) -> float:
        return self._status_mib("VmRSS") or self._maxrss_mib()

    def peak_mib(self) -> float:
        return (self._status_mib("VmHWM") if self.resettable else None) or self._maxrss_mib()


HOST = HostMemory()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Meter:
    """Wall time, CPU time of the process (≈ wall × threads when nothing else competes for the cores), peak
    host RSS (absolute and above the start) and peak device memory of a ``with`` block. Meters must not be
    nested: each one resets the host and device peaks."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds = 0.0
        self.host_peak_mib = 0.0
        self.host_delta_mib = 0.0
        self.device_peak_mib = 0.0
        self.cpu_s = 0.0
        self._host_start = 0.0
        self._start = 0.0
        self._cpu_start = 0.0

    def __enter__(self) -> Meter:
        synchronize(self.device)
        if HOST.resettable:
            HOST.reset_peak()
        self._host_start = HOST.current_mib()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._start = time.perf_counter()
        self._cpu_start = time.process_time()
        return self

    def __exit__(self, *exc_info: object) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._start
        self.cpu_s = time.process_time() - self._cpu_start
        self.host_peak_mib = HOST.peak_mib()
        self.host_delta_mib = max(0.0, self.host_peak_mib - self._host_start)
        if self.device.type == "cuda":
            self.device_peak_mib = torch.cuda.max_memory_allocated(self.device) / MIB

    def summary(self) -> dict[str, float]:
        """CPU seconds of the process (all threads) and the memory peaks, for a result row."""
        return {
            "cpu_s": round(self.cpu_s, 3),
            "host_peak_mib": round(self.host_peak_mib, 1),
            "host_delta_mib": round(self.host_delta_mib, 1),
            "device_peak_mib": round(self.device_peak_mib, 1),
        }


# --------------------------------------------------------------------------------------------- inputs


class FeatureBank:
    """Synthetic MNIST-shaped feature sets, generated once per size and device. The MNIST-sized set is kept
    for the whole run; any other size replaces the previous one (the 600k-row set is large)."""

    def __init__(self, sizes: Sizes) -> None:
        self.sizes = sizes
        self._sets: dict[tuple[int, int, int, str], FeatureSet] = {}

    def mnist(self, device: torch.device) -> FeatureSet:
        return self.get(self.sizes.train_per_class, self.sizes.test_per_class, self.sizes.dim, device)

    def get(self, train_per_class: int, test_per_class: int, dim: int, device: torch.device) -> FeatureSet:
        key = (train_per_class, test_per_class, dim, str(device))
        if key not in self._sets:
            keep = (self.sizes.train_per_class, self.sizes.test_per_class, self.sizes.dim)
            self._sets = {k: v for k, v in self._sets.items() if k[:3] == keep}
            features = make_mixture(
                n_classes=N_CLASSES,
                modes=MODES,
                dim=dim,
                n_train_per_class=train_per_class,
                n_test_per_class=test_per_class,
            )
            self._sets[key] = features.to(device) if device.type != "cpu" else features
        return self._sets[key]


@dataclass(frozen=True)
class Experiment:
    """The method grid of one ``conf/experiment`` file and the tasks and seeds its sweep runs per cell."""

    name: str
    plan: GridPlan
    tasks: list[str]
    seeds: list[int]


def load_experiment(name: str) -> Experiment:
    cfg = OmegaConf.load(config_dir() / "experiment" / f"{name}.yaml")
    plan = expand_grid(MethodSpec(), OmegaConf.to_container(cfg.grid, resolve=True))
    params = cfg.hydra.sweeper.params
    return Experiment(name, plan, str(params.task).split(","), [int(s) for s in str(params.seed).split(",")])


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def runnable(spec: MethodSpec) -> MethodSpec:
    """``spec`` as this machine can run it: the torch k-means backend where faiss is not installed."""
    if spec.gen.backend == "faiss" and not has_module("faiss"):
        return replace(spec, gen=replace(spec.gen, backend="torch"))
    return spec


# --------------------------------------------------------------------------------------------- engine


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


# --------------------------------------------------------------------------------------------- k-means


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


# --------------------------------------------------------------------------------------------- extraction


@dataclass(frozen=True)
class Precision:
    """An extraction setting, as ``conf/extract``: bf16 autocast and channels_last (both CUDA-only)."""

    name: str
    amp: bool
    channels_last: bool


CPU_PRECISIONS = (Precision("fp32", False, False),)
CUDA_PRECISIONS = (
    Precision("fp32", False, False),
    Precision("bf16", True, False),
    Precision("fp32+channels_last", False, True),
    Precision("bf16+channels_last", True, True),
)


def backbone_config(name: str) -> dict[str, Any]:
    """``conf/backbone/<name>.yaml`` with random weights (``pretrained: false``: nothing is downloaded)."""
    cfg = OmegaConf.to_container(OmegaConf.load(config_dir() / "backbone" / f"{name}.yaml"), resolve=True)
    return {**cfg, "pretrained": False, "checkpoint": None}


def forward(backbone: Backbone, batch: torch.Tensor, precision: Precision) -> torch.Tensor:
    """One model call as the extractor makes it (``features._embed``): channels_last input, bf16 autocast."""
    if precision.channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=precision.amp):
        return backbone.model(batch).flatten(1).float()


@torch.inference_mode()
def time_pipeline(
    backbone: Backbone, images: torch.Tensor, batch_size: int, precision: Precision, device: torch.device
) -> dict[str, float]:
    """uint8 images on the host → upload → ``Preprocess.batch`` (resize, crop, normalise on the device) →
    model → features back on the host: the extractor's path for in-memory datasets."""
    with Meter(device) as meter:
        on_device = images.to(device)
        features = [
            forward(backbone, backbone.preprocess.batch(on_device[i : i + batch_size]), precision)
            for i in range(0, len(on_device), batch_size)
        ]
        torch.cat(features).cpu()
    return {
        "images_per_s": round(len(images) / meter.seconds, 2),
        "seconds": round(meter.seconds, 3),
        **meter.summary(),
    }


@torch.inference_mode()
def time_forward(
    backbone: Backbone, inputs: torch.Tensor, n_batches: int, precision: Precision, device: torch.device
) -> dict[str, float]:
    """Model-only throughput: the same preprocessed batch, already on the device, ``n_batches`` times."""
    with Meter(device) as meter:
        for _ in range(n_batches):
            forward(backbone, inputs, precision)
    return {
        "images_per_s": round(n_batches * len(inputs) / meter.seconds, 2),
        "seconds": round(meter.seconds, 3),
        **meter.summary(),
    }


def extract_suite(device: torch.device, sizes: Sizes, bank: FeatureBank) -> Iterator[tuple[str, Any]]:
    """Images/s of each backbone at 224 px (random weights) through the real pipeline from uint8 MNIST
    (28×28 grey) and CIFAR (32×32 RGB) tensors, next to the model-only forward on the same device."""
    precisions = CUDA_PRECISIONS if device.type == "cuda" else CPU_PRECISIONS
    generator = torch.Generator().manual_seed(0)
    rows = []
    for name in tqdm(BACKBONES, desc="extract", leave=False):
        n_images = sizes.extract_images_heavy if name in HEAVY_BACKBONES else sizes.extract_images
        batch_size = min(sizes.extract_batch, n_images)
        sources = {
            "mnist": torch.randint(0, 256, (n_images, 1, 28, 28), dtype=torch.uint8, generator=generator),
            "cifar": torch.randint(0, 256, (n_images, 3, 32, 32), dtype=torch.uint8, generator=generator),
        }
        start = time.perf_counter()
        backbone = load_backbone(backbone_config(name), device)
        build_s = time.perf_counter() - start
        with torch.inference_mode():
            inputs = backbone.preprocess.batch(sources["cifar"][:batch_size].to(device))
        for precision in precisions:
            memory_format = torch.channels_last if precision.channels_last else torch.contiguous_format
            backbone.model.to(memory_format=memory_format)
            with torch.inference_mode():  # first calls pay for kernel selection and allocator growth
                for images in sources.values():
                    forward(backbone, backbone.preprocess.batch(images[: sizes.warmup_images].to(device)), precision)
            row = {
                "backbone": name,
                "precision": precision.name,
                "images": n_images,
                "batch": batch_size,
                "input_px": int(inputs.shape[-1]),
                "build_s": round(build_s, 2),
            }
            for source, images in sources.items():
                row[f"pipeline_{source}"] = time_pipeline(backbone, images, batch_size, precision, device)
            row["model_only"] = time_forward(backbone, inputs, n_images // batch_size, precision, device)
            rows.append(row)
        del backbone, inputs
        if device.type == "cuda":
            torch.cuda.empty_cache()
    note = None if device.type == "cuda" else "fp32 only: bf16 autocast and channels_last are GPU settings"
    yield "backbones", rows
    yield "note", note


# --------------------------------------------------------------------------------------------- memory


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


SUITES: dict[str, Callable[[torch.device, Sizes, FeatureBank], Iterator[tuple[str, Any]]]] = {
    "engine": engine_suite,
    "kmeans": kmeans_suite,
    "extract": extract_suite,
    "memory": memory_suite,
}


# --------------------------------------------------------------------------------------------- report


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in VERSIONED:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(devices: list[torch.device], args: argparse.Namespace) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_start": [round(v, 2) for v in os.getloadavg()],
        "gpu": torch.cuda.get_device_name() if any(d.type == "cuda" for d in devices) else None,
        "devices": [str(d) for d in devices],
        "versions": versions(),
        "faiss_installed": has_module("faiss"),
        "ours_kmeans_backend": runnable(PRESETS["ours"]).gen.backend,
        "thread_env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
        "host_memory_method": HOST.method,
        "suites": list(args.suite),
        "quick": args.quick,
        "argv": sys.argv[1:],
    }


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Targets stated by the project (CPU, full sizes only): met, missed or not measured."""
    if report["meta"]["quick"]:
        return []
    out = []
    table1 = report["results"].get("cpu", {}).get("engine", {}).get("table1")
    if table1 is not None:
        out.append(
            {
                "target": "Table-1 grid (60 runs), one MNIST-sized cell, CPU",
                "measured_s": table1["wall_s"],
                "limit_s": TABLE1_TARGET_S,
                "met": table1["wall_s"] < TABLE1_TARGET_S,
            }
        )
    meta = report["meta"]
    if meta["devices"] == ["cpu"] and set(meta["suites"]) == set(SUITE_NAMES) and meta.get("complete"):
        out.append(
            {
                "target": "whole default CPU run (make bench)",
                "measured_s": meta["total_s"],
                "limit_s": RUN_TARGET_S,
                "met": meta["total_s"] < RUN_TARGET_S,
            }
        )
    return out


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio(value: float | None) -> str | None:
    return None if value is None else f"{value:.4f}"


def md_table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


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


def render_extract(r: dict[str, Any]) -> list[str]:
    lines = ["### Extraction at 224 px (random weights)", ""]
    if r.get("note"):
        lines += [r["note"], ""]
    rows = []
    for row in r.get("backbones", []):
        parts = (row["pipeline_mnist"], row["pipeline_cifar"], row["model_only"])
        rows.append(
            [
                row["backbone"],
                row["precision"],
                row["images"],
                row["batch"],
                *(p["images_per_s"] for p in parts),
                max(p["host_peak_mib"] for p in parts),
                max(p["device_peak_mib"] for p in parts),
            ]
        )
    lines += md_table(
        [
            "backbone",
            "precision",
            "images",
            "batch",
            "pipeline img/s (MNIST 28² grey)",
            "pipeline img/s (CIFAR 32² RGB)",
            "model-only img/s",
            "host peak MiB",
            "device peak MiB",
        ],
        rows,
    )
    return lines


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


RENDERERS = {"engine": render_engine, "kmeans": render_kmeans, "extract": render_extract, "memory": render_memory}


def render_markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    vers = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    lines = [
        "# imprint_bench benchmark" + (" (quick: tiny sizes, numbers meaningless)" if meta["quick"] else ""),
        "",
        f"- date: {meta['date']}; host: {meta['host']} ({meta['platform']})",
        f"- CPU: {meta['cpu']}, {meta['cpus_usable']} usable cores of {meta['cpu_count']}, "
        f"torch threads {meta['torch_threads']}; thread settings {meta['thread_env'] or 'none'}; "
        f"GPU: {meta['gpu'] or 'none'}",
        f"- k-means backend of `ours`: {meta['ours_kmeans_backend']}"
        + ("" if meta["faiss_installed"] else " (faiss is not installed here)"),
        f"- versions: {vers}",
        f"- load average at start / end: {meta['load_avg_start']} / {meta.get('load_avg_end', '–')} "
        "(other processes on the machine slow every number)",
        f"- host memory: {meta['host_memory_method']}; device memory: torch.cuda.max_memory_allocated",
        f"- run: {meta['total_s']:.0f} s for suites {','.join(meta['suites'])} on {','.join(meta['devices'])}"
        + ("" if meta.get("complete") else " (incomplete)"),
        "",
    ]
    if report["targets"]:
        lines += ["## Targets", ""]
        lines += md_table(
            ["target", "measured s", "limit s", "status"],
            [[t["target"], t["measured_s"], t["limit_s"], "met" if t["met"] else "MISSED"] for t in report["targets"]],
        )
    for device, suites in report["results"].items():
        lines += [f"## {device}", ""]
        for name, result in suites.items():
            lines += RENDERERS[name](result)
            if "error" in result:
                lines += [f"**The {name} suite failed:** `{result['error'].strip().splitlines()[-1]}`", ""]
    return "\n".join(lines)


def write_report(report: dict[str, Any], out: Path, stem: str, start: float) -> str:
    report["meta"]["total_s"] = round(time.perf_counter() - start, 1)
    report["meta"]["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    report["targets"] = targets(report)
    markdown = render_markdown(report)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1))
    (out / f"{stem}.md").write_text(markdown + "\n")
    return markdown


# --------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--suite",
        default=",".join(SUITE_NAMES),
        help=f"comma-separated suites out of {','.join(SUITE_NAMES)} (default: all)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: the CPU, plus CUDA when present (default)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench", help="output folder")
    args = parser.parse_args(argv)
    args.suite = [s.strip() for s in args.suite.split(",") if s.strip()]
    unknown = sorted(set(args.suite) - set(SUITE_NAMES))
    if unknown or not args.suite:
        parser.error(f"unknown suites {unknown}; choose from {','.join(SUITE_NAMES)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available here")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    devices = [torch.device("cpu")] if args.device != "cuda" else []
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        devices.append(torch.device("cuda"))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "bench_" + "+".join(d.type for d in devices) + ("_quick" if args.quick else "")
    report: dict[str, Any] = {"meta": environment(devices, args), "targets": [], "results": {}}
    failed = []
    for device in devices:
        sizes = sizes_for(device, args.quick)
        bank = FeatureBank(sizes)
        for suite in args.suite:
            results = report["results"].setdefault(device.type, {}).setdefault(suite, {})
            try:
                for key, value in SUITES[suite](device, sizes, bank):
                    results[key] = value
                    write_report(report, args.out, stem, start)
            except Exception:  # keep what was measured and go on with the other suites
                results["error"] = traceback.format_exc(limit=8)
                failed.append(f"{device.type}/{suite}")
                print(results["error"], file=sys.stderr)
    report["meta"]["complete"] = True
    markdown = write_report(report, args.out, stem, start)
    print(markdown)
    print(f"\nwritten: {args.out / stem}.json and .md", file=sys.stderr)
    if failed:
        print(f"failed suites: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
