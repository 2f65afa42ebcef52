"""Benchmark imprint_bench: engine throughput, k-means backends, feature extraction and peak memory.

    python scripts/bench.py [--suite engine,kmeans,extract,memory,auto_k] [--device auto|cpu|cuda] [--quick] [--out DIR]

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
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from benchmarks import SUITE_NAMES, SUITES
from benchmarks.common import FeatureBank, sizes_for
from benchmarks.report import environment, write_report

ROOT = Path(__file__).resolve().parent.parent


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
