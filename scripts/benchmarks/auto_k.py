"""auto_k suite: how well each ``gen.k=auto`` criterion recovers the number of modes of synthetic classes, and the
accuracy of imprinting with the k it chooses.

Each setting (dimension, spread of the mode centres, mode shape, seed) is one task of classes with 1 to 12
Gaussian modes each (noise std 1, centres drawn from N(0, spread²·I); "anisotropic" modes have a power-law
spectrum of the same total variance, as real embeddings do). As in ``ours``, k-means runs on L2-normalised rows;
every criterion scores the same k-means ladder (``cluster.kmeans_ladder``), so they differ only in the k chosen.
Recovery: |k̂ − modes| ≤ 1. Accuracy: L2-normalised proxies, max over a class's proxies (``ours`` with each k).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from imprint_bench.imprint.cluster import AUTO_K_CRITERION, CRITERIA, candidate_ks, choose_k, kmeans_ladder
from imprint_bench.rng import derive_seed

from .common import QUICK, FeatureBank, Meter, Sizes, md_table

MODES_PER_CLASS = (1, 2, 3, 4, 6, 8, 12)  # one class each, on every ladder value
FIXED_KS = (1, 20)  # references: mean imprinting and ``ours``


@dataclass(frozen=True)
class AutoKSizes:
    """The settings of one run: every combination of dims × spreads × shapes × seeds is one task."""

    train_per_class: int
    test_per_class: int
    dims: tuple[int, ...]
    spreads: tuple[float, ...]
    shapes: tuple[str, ...]
    seeds: tuple[int, ...]


AUTO_K_FULL = AutoKSizes(240, 100, (32, 128), (0.75, 1.5), ("isotropic", "anisotropic"), (0, 1))
AUTO_K_QUICK = AutoKSizes(160, 40, (32,), (1.0,), ("isotropic", "anisotropic"), (0,))


def mode_scales(dim: int, shape: str) -> torch.Tensor:
    """Per-dimension noise std of a mode: 1, or a power law i^(-1/2) rescaled to the same total variance."""
    if shape == "isotropic":
        return torch.ones(dim)
    scales = torch.arange(1, dim + 1, dtype=torch.float32) ** -0.5
    return scales / scales.pow(2).mean().sqrt()


def mixture_task(sizes: AutoKSizes, dim: int, spread: float, shape: str,
                 seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Train and test rows of each class (one per ``MODES_PER_CLASS``), L2-normalised; rows cycle over the modes."""
    g = torch.Generator().manual_seed(derive_seed(seed, "auto_k", dim, spread, shape))
    scales = mode_scales(dim, shape)
    train, test = [], []
    for modes in MODES_PER_CLASS:
        centres = torch.randn((modes, dim), generator=g) * spread
        for rows, out in ((sizes.train_per_class, train), (sizes.test_per_class, test)):
            x = centres[torch.arange(rows) % modes] + torch.randn((rows, dim), generator=g) * scales
            out.append(torch.nn.functional.normalize(x, dim=1))
    return train, test


def imprint_accuracy(proxies: list[torch.Tensor], test: list[torch.Tensor]) -> float:
    """Test accuracy (%) of L2-normalised proxies with max aggregation (inner product)."""
    x = torch.cat(test)
    y = torch.cat([torch.full((len(t),), c) for c, t in enumerate(test)]).to(x.device)
    scores = x @ torch.nn.functional.normalize(torch.cat(proxies), dim=1).T
    per_class = torch.stack([part.max(1).values for part in scores.split([len(p) for p in proxies], dim=1)], 1)
    return float((per_class.argmax(1) == y).double().mean() * 100)


def auto_k_suite(device: torch.device, sizes: Sizes, bank: FeatureBank) -> Iterator[tuple[str, Any]]:
    """Per setting: the k each criterion chooses for each class and the accuracy of imprinting with it (and with
    the true number of modes and ``FIXED_KS``); then recovery rate, mean absolute error and accuracy per
    criterion, overall and per mode shape."""
    plan = AUTO_K_QUICK if sizes == QUICK else AUTO_K_FULL
    settings = [(d, s, shape, seed) for d in plan.dims for s in plan.spreads for shape in plan.shapes
                for seed in plan.seeds]
    rows = []
    for dim, spread, shape, seed in tqdm(settings, desc="auto_k", leave=False):
        train, test = mixture_task(plan, dim, spread, shape, seed)
        train, test = [x.to(device) for x in train], [x.to(device) for x in test]
        with Meter(device) as meter:
            ladders = kmeans_ladder(train, [derive_seed(seed, "kmeans", c) for c in range(len(train))], "auto")
        row: dict[str, Any] = {"dim": dim, "spread": spread, "shape": shape, "seed": seed, "modes": MODES_PER_CLASS,
                               "ladder_s": round(meter.seconds, 3)}
        for criterion in CRITERIA:
            picks = [choose_k(x, candidates, criterion) for x, candidates in zip(train, ladders, strict=True)]
            row[f"k_{criterion}"] = [candidate_ks(len(x))[i] for x, i in zip(train, picks, strict=True)]
            row[f"acc_{criterion}"] = imprint_accuracy([c[i] for c, i in zip(ladders, picks, strict=True)], test)
        row["acc_true_k"] = imprint_accuracy(
            [c[candidate_ks(len(x)).index(m)] for x, c, m in zip(train, ladders, MODES_PER_CLASS, strict=True)], test)
        for k in FIXED_KS:
            row[f"acc_k{k}"] = imprint_accuracy([c[candidate_ks(len(x)).index(k)] for x, c in zip(train, ladders,
                                                                                                 strict=True)], test)
        rows.append(row)
    yield "settings", rows
    yield "summary", [summary(rows, criterion, shape) for criterion in CRITERIA
                      for shape in ("all", *plan.shapes)]


def summary(rows: list[dict[str, Any]], criterion: str, shape: str) -> dict[str, Any]:
    """Recovery rate (|k̂ − modes| ≤ 1, %), mean |k̂ − modes| and mean accuracy of one criterion over the settings
    of one mode shape (``all``: every setting)."""
    chosen = [r for r in rows if shape in ("all", r["shape"])]
    errors = [abs(k - m) for r in chosen for k, m in zip(r[f"k_{criterion}"], r["modes"], strict=True)]
    return {
        "criterion": criterion,
        "auto": criterion == AUTO_K_CRITERION,
        "shape": shape,
        "classes": len(errors),
        "recovery_pct": round(100 * sum(e <= 1 for e in errors) / len(errors), 1),
        "mae": round(sum(errors) / len(errors), 2),
        "acc": round(sum(r[f"acc_{criterion}"] for r in chosen) / len(chosen), 2),
        "acc_true_k": round(sum(r["acc_true_k"] for r in chosen) / len(chosen), 2),
        **{f"acc_k{k}": round(sum(r[f"acc_k{k}"] for r in chosen) / len(chosen), 2) for k in FIXED_KS},
    }


def render_auto_k(r: dict[str, Any]) -> list[str]:
    lines = ["### gen.k=auto criteria (synthetic classes of 1–12 Gaussian modes; recovery: |k̂ − modes| ≤ 1)", ""]
    lines += md_table(
        ["criterion", "modes", "classes", "recovery %", "mean |k̂ − modes|", "acc %", "acc, true k",
         *(f"acc, k={k}" for k in FIXED_KS)],
        [[row["criterion"] + (" (auto)" if row["auto"] else ""), row["shape"], row["classes"], row["recovery_pct"],
          row["mae"], row["acc"], row["acc_true_k"], *(row[f"acc_k{k}"] for k in FIXED_KS)]
         for row in r.get("summary", [])],
    )
    lines += md_table(
        ["d", "spread", "modes", "seed", *(f"k̂ {c}" for c in CRITERIA), "ladder s"],
        [[row["dim"], row["spread"], row["shape"], row["seed"], *(" ".join(map(str, row[f"k_{c}"])) for c in CRITERIA),
          row["ladder_s"]] for row in r.get("settings", [])],
    )
    lines.append(f"True modes of the classes: {' '.join(map(str, MODES_PER_CLASS))}.")
    lines.append("")
    return lines
