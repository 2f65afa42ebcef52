"""Example external GEN functions for imprint_bench (README, "Bring your own stage").

Run from this folder, or with it on PYTHONPATH:

    imprint-bench dataset=synthetic gen=custom gen._target_=my_gen.first_rows +gen.n=3
    imprint-bench dataset=synthetic gen=custom gen._target_=my_gen.trimmed_mean gen.k=1 +gen.trim=0.1
"""

from __future__ import annotations

import torch


def first_rows(x: torch.Tensor, k: int, generator: torch.Generator, n: int = 1) -> torch.Tensor:
    """The class's first ``n`` rows as its proxies (a toy: k is ignored)."""
    return x[: max(1, min(n, x.shape[0]))]


def trimmed_mean(x: torch.Tensor, k: int, generator: torch.Generator, trim: float = 0.1) -> torch.Tensor:
    """One proxy: the mean of the rows nearest the class mean, dropping the ``trim`` share farthest from it."""
    distance = (x - x.mean(0)).norm(dim=1)
    keep = max(1, round(x.shape[0] * (1 - trim)))
    return x[distance.argsort()[:keep]].mean(0, keepdim=True)
