"""The benchmark report: environment and versions, the targets met or missed, JSON and Markdown output."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from imprint_bench.imprint.spec import PRESETS

from . import RENDERERS, SUITE_NAMES
from .common import HOST, has_module, md_table, runnable
from .engine import TABLE1_TARGET_S

RUN_TARGET_S = 600.0  # the whole default CPU run
THREAD_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
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
