"""What the benchmark suites share: problem sizes, the :class:`Meter` (wall and CPU time, peak host and device
memory), the synthetic feature sets, the experiments' method grids and the Markdown table helpers."""

from __future__ import annotations

import importlib.util
import resource
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from imprint_bench.config import config_dir
from imprint_bench.data.base import FeatureSet
from imprint_bench.data.synthetic import make_mixture
from imprint_bench.grid import GridPlan, expand_grid
from imprint_bench.imprint.spec import MethodSpec

MIB = float(1 << 20)
N_CLASSES = 10
MODES = 4


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


def md_table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return [*lines, ""]
