"""GEN: proxies per class (all, mean, random, kmeans, kmedoids, fps, cov_max, none) and the
least-squares references (ls, kls) that are solved jointly over a task's classes (spec §4.2)."""

from __future__ import annotations

import math

import torch

from imprint_bench.imprint.cluster import kmeans, kmeans_auto, kmedoids, kmedoids_auto
from imprint_bench.imprint.spec import GEN_K_AUTO, PER_CLASS_GEN, GenSpec
from imprint_bench.rng import derive_seed, generator


def _takes_all(x: torch.Tensor, spec: GenSpec) -> bool:
    """The reference's first rule: ``all``, k=-1, or fewer samples than k → every sample is a proxy (``k=auto``
    chooses a k below the row count)."""
    return spec.name == "all" or spec.k == -1 or (spec.k != GEN_K_AUTO and x.shape[0] < spec.k)


def random_proxies(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """The first k samples of a random permutation."""
    return x[torch.randperm(x.shape[0], generator=gen, device=gen.device)[:k].to(x.device)]


def farthest_point_proxies(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Farthest point sampling: random start, then repeatedly the point farthest from those chosen
    (ties to the lowest index)."""
    start = int(torch.randint(x.shape[0], (1,), generator=gen, device=gen.device))
    chosen = [start]
    sq_norms = (x * x).sum(1)

    def sq_dist_to(i: int) -> torch.Tensor:  # one mat-vec per step instead of a cdist call
        return (sq_norms - 2 * (x @ x[i]) + sq_norms[i]).clamp_min_(0)

    min_dist = sq_dist_to(start)
    for _ in range(k - 1):
        nxt = int(torch.argmax(min_dist))
        chosen.append(nxt)
        min_dist = torch.minimum(min_dist, sq_dist_to(nxt))
    return x[chosen]


def cov_max_proxies(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k samples with the largest column sums of ``torch.cov(x)`` (rows as variables, as the
    reference computes it), in O(n·d) instead of O(n²·d): column j sums to (Σ_i x̃_i)·x̃_j / (d−1),
    where x̃ is each sample centred on its own feature mean. Ties keep index order."""
    centred = x - x.mean(dim=1, keepdim=True)
    col_sums = centred @ centred.sum(0) / (x.shape[1] - 1)
    return x[torch.argsort(col_sums, descending=True, stable=True)[:k]]


def xavier_proxies(k: int, d: int, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Untrained weights: Xavier-uniform U(±√(6/(k+d))) (GEN ``none``, a random-head baseline)."""
    bound = math.sqrt(6.0 / (k + d))
    w = torch.rand((k, d), generator=gen, device=gen.device) * 2 * bound - bound
    return w.to(like.device, like.dtype)


def generate_class_proxies(
    xs: list[torch.Tensor], labels: list[int], spec: GenSpec, seed: int
) -> list[torch.Tensor]:
    """Proxies for each class independently (every method in ``PER_CLASS_GEN``).

    Randomness for class ``label`` comes from ``(seed, method, label)`` only, so a class gets the
    same proxies whatever task it appears in and whatever else ran before. k-means runs batched
    over the classes that need it; with ``k="auto"`` once per candidate k (``cluster.kmeans_auto``).
    """
    if spec.name not in PER_CLASS_GEN:
        raise ValueError(f"{spec.name} is solved jointly over classes; use generate_task_proxies")
    out: list[torch.Tensor | None] = [None] * len(xs)
    pending: list[int] = []
    for i, (x, label) in enumerate(zip(xs, labels, strict=True)):
        if _takes_all(x, spec):
            out[i] = x
        elif spec.name == "none":
            out[i] = xavier_proxies(spec.k, x.shape[1], generator(seed, "none", label), x)
        elif x.shape[0] == 1:
            out[i] = x
        elif spec.name == "mean":
            out[i] = x.mean(0, keepdim=True)
        elif spec.name == "random":
            out[i] = random_proxies(x, spec.k, generator(seed, "random", label, device=x.device))
        elif spec.name == "fps":
            out[i] = farthest_point_proxies(x, spec.k, generator(seed, "fps", label, device=x.device))
        elif spec.name == "cov_max":
            out[i] = cov_max_proxies(x, spec.k)
        elif spec.name == "kmedoids":
            out[i] = x[kmedoids_auto(x) if spec.k == GEN_K_AUTO else kmedoids(x, spec.k)]
        else:  # kmeans
            pending.append(i)
    if pending:
        seeds = [derive_seed(seed, "kmeans", labels[i]) for i in pending]
        sets = [xs[i] for i in pending]
        if spec.k == GEN_K_AUTO:
            centers = kmeans_auto(sets, seeds, spec.backend, spec.kmeans_iters)
        else:
            centers = kmeans(sets, spec.k, seeds, spec.backend, spec.kmeans_iters)
        for i, c in zip(pending, centers, strict=True):
            out[i] = c
    return [o for o in out if o is not None]


def gram_matrix(x: torch.Tensor) -> torch.Tensor:
    """XᵀX (float32 product, float64 result): per-class pieces of the LS system, summable across classes."""
    return (x.T @ x).to(torch.float64)


def summed(mats: list[torch.Tensor]) -> torch.Tensor:
    """Σ of equally shaped matrices, accumulated in place (no temporary per addition)."""
    total = mats[0].clone()
    for m in mats[1:]:
        total += m
    return total


def least_squares_weights(groups: list[torch.Tensor], lam: float, gram: torch.Tensor | None = None) -> torch.Tensor:
    """Ridge least-squares weights, one row per group (spec §4.2):
    W = (1/G) · Mᵀ (Σ_T + μ_G μ_Gᵀ + λI)⁻¹ = (1/G) · Mᵀ (XᵀX/N + λI)⁻¹, M = group means.
    ``gram`` (XᵀX over all groups' rows) may be passed in when cached. Solved in float64 by Cholesky
    (LU when λ = 0 leaves the system singular; the reference inverts in float32)."""
    n = sum(int(g.shape[0]) for g in groups)
    gram = gram if gram is not None else summed([gram_matrix(g) for g in groups])
    system = gram / n
    system.diagonal().add_(lam)
    means = torch.stack([g.to(torch.float64).mean(0) for g in groups], dim=1)  # [d, G]
    factor, info = torch.linalg.cholesky_ex(system)  # symmetric positive definite for λ > 0: half an LU
    w = (torch.cholesky_solve(means, factor) if int(info) == 0 else torch.linalg.solve(system, means)).T / len(groups)
    return w.to(groups[0].dtype)


def generate_task_proxies(
    xs: list[torch.Tensor],
    labels: list[int],
    spec: GenSpec,
    seed: int,
    lam: float,
    grams: list[torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """``ls``: one LS weight per class. ``kls``: k-means splits each class into k pseudo-classes, LS is
    solved over all pseudo-classes, and each class keeps its k rows. As in the reference, a class with
    fewer than k samples (or k=-1) keeps its raw samples and is left out of the LS system.
    ``grams`` are optional cached per-class XᵀX (pseudo-classes partition a class, so they add up)."""
    if spec.name == "ls" or spec.k == 1:
        return list(torch.split(least_squares_weights(xs, lam, summed(grams) if grams else None), 1))
    solved = [i for i, x in enumerate(xs) if not _takes_all(x, spec)]
    seeds = [derive_seed(seed, "kmeans", labels[i]) for i in solved]
    centers = kmeans([xs[i] for i in solved], spec.k, seeds, spec.backend, spec.kmeans_iters)
    groups: list[torch.Tensor] = []
    for i, c in zip(solved, centers, strict=True):
        assign = torch.cdist(xs[i], c).argmin(1)
        # an (unusual) empty cluster keeps its centre as a one-row pseudo-class, so every class has k rows;
        # that row is not part of the cached XᵀX, a negligible inconsistency in the LS system

        groups.extend(xs[i][assign == j] if bool((assign == j).any()) else c[j : j + 1] for j in range(spec.k))
    gram = summed([grams[i] for i in solved]) if grams and solved else None
    weights = torch.split(least_squares_weights(groups, lam, gram), spec.k) if groups else []
    out = list(xs)
    for i, w in zip(solved, weights, strict=True):
        out[i] = w
    return out
