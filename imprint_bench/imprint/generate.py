"""GEN: the functions behind the registered GEN methods (``registry.py``): proxies per class (all, mean, random,
kmeans, kmedoids, fps, cov_max, none, or an external function) and the least-squares references (ls, kls) that
are solved jointly over a task's classes (spec §4.2)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from imprint_bench.errors import ConfigError
from imprint_bench.imprint.cluster import kmeans, kmeans_auto, kmedoids, kmedoids_auto
from imprint_bench.imprint.registry import GenStage, gen_stage, resolve_function
from imprint_bench.imprint.spec import GEN_K_AUTO, REFERENCE_SEEDING, GenSpec
from imprint_bench.rng import derive_seed, generator


def takes_all(x: torch.Tensor, k: int | str) -> bool:
    """The reference's first rule: k=-1, or fewer samples than k → every sample is a proxy (``k=auto`` chooses a
    k below the row count)."""
    return k == -1 or (k != GEN_K_AUTO and x.shape[0] < k)


def class_seeds(spec: GenSpec, seed: int, labels: list[int]) -> list[int]:
    """The k-means seed of each class: derived from (seed, "kmeans", label), or with ``gen.seeding=reference`` the
    run seed itself for every class, as the reference passes it to sklearn."""
    if spec.seeding == REFERENCE_SEEDING:
        return [seed] * len(labels)
    return [derive_seed(seed, "kmeans", label) for label in labels]


def all_rows(x: torch.Tensor, k: int, generator: None) -> torch.Tensor:
    """Every training row is a proxy (``all``; reached through the reference's k = -1 rule)."""
    return x


def mean_proxy(x: torch.Tensor, k: int, generator: None) -> torch.Tensor:
    """The class mean (Qi et al.)."""
    return x.mean(0, keepdim=True)


def random_proxies(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """The first k samples of a random permutation."""
    return x[torch.randperm(x.shape[0], generator=generator, device=generator.device)[:k].to(x.device)]


def farthest_point_proxies(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Farthest point sampling: random start, then repeatedly the point farthest from those chosen
    (ties to the lowest index)."""
    start = int(torch.randint(x.shape[0], (1,), generator=generator, device=generator.device))
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


def cov_max_proxies(x: torch.Tensor, k: int, generator: None = None) -> torch.Tensor:
    """The k samples with the largest column sums of ``torch.cov(x)`` (rows as variables, as the
    reference computes it), in O(n·d) instead of O(n²·d): column j sums to (Σ_i x̃_i)·x̃_j / (d−1),
    where x̃ is each sample centred on its own feature mean. Ties keep index order."""
    centred = x - x.mean(dim=1, keepdim=True)
    col_sums = centred @ centred.sum(0) / (x.shape[1] - 1)
    return x[torch.argsort(col_sums, descending=True, stable=True)[:k]]


def kmedoids_proxies(x: torch.Tensor, k: int | str, generator: None) -> torch.Tensor:
    """The k medoid samples (alternate, heuristic init: deterministic); ``k=auto`` chooses k per class."""
    return x[kmedoids_auto(x) if k == GEN_K_AUTO else kmedoids(x, k)]


def xavier_proxies(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Untrained weights: Xavier-uniform U(±√(6/(k+d))) (GEN ``none``, a random-head baseline)."""
    d = x.shape[1]
    bound = math.sqrt(6.0 / (k + d))
    w = torch.rand((k, d), generator=generator, device=generator.device) * 2 * bound - bound
    return w.to(x.device, x.dtype)


def streaming_mean(batches: Iterable[torch.Tensor], k: int, seed: int | None) -> torch.Tensor:
    """The class mean from a stream of row batches: a running float64 sum and count (O(d) state)."""
    total, n, like = None, 0, None
    for batch in batches:
        part = batch.sum(0, dtype=torch.float64)
        total = part if total is None else total + part
        n, like = n + int(batch.shape[0]), batch
    if total is None or like is None:
        raise ValueError("a class with no rows has no mean")
    return (total / n).to(like.dtype).unsqueeze(0)


def streaming_kmeans(batches: Iterable[torch.Tensor], k: int, seed: int | None) -> torch.Tensor:
    """k centroids from a stream of row batches in one pass: sklearn's ``MiniBatchKMeans.partial_fit`` (k-means++
    on the first batch, then online centre updates), seeded per class; O(k·d) state. Batches are gathered until
    the first holds at least 3k rows (what sklearn's init needs to choose k centres well)."""
    from sklearn.cluster import MiniBatchKMeans

    model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=1)
    pending: list[torch.Tensor] = []
    like = None
    fitted = False
    for batch in batches:
        like = batch
        pending.append(batch)
        if fitted or sum(int(b.shape[0]) for b in pending) >= 3 * k:
            model.partial_fit(torch.cat(pending).to(torch.float32).cpu().numpy())
            pending, fitted = [], True
    if like is None:
        raise ValueError("a class with no rows has no centroids")
    if pending and not fitted and sum(int(b.shape[0]) for b in pending) < k:
        return torch.cat(pending)  # fewer rows than k: every row is a proxy (the reference's rule)
    if pending:  # the rest of the stream, or a short class in one call
        model.partial_fit(torch.cat(pending).to(torch.float32).cpu().numpy())
    return torch.from_numpy(model.cluster_centers_).to(like.device, like.dtype)


def kmeans_proxies(xs: list[torch.Tensor], spec: GenSpec, seeds: list[int]) -> list[torch.Tensor]:
    """k-means centroids of every class at once (batched); with ``k="auto"`` once per candidate k."""
    if spec.k == GEN_K_AUTO:
        return kmeans_auto(xs, seeds, spec.backend, spec.kmeans_iters)
    return kmeans(xs, spec.k, seeds, spec.backend, spec.kmeans_iters)


def check_proxies(stage: GenStage, x: torch.Tensor, out: Any) -> torch.Tensor:
    """An external function's output must be a float tensor [p, d] with p ≥ 1 and the rows' d."""
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] < 1 or out.shape[1] != x.shape[1]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"GEN function {stage.name} must return a tensor [p, {x.shape[1]}] (p ≥ 1 proxies of "
                          f"the class's {x.shape[1]}-dimensional rows); it returned {shape}")
    return out.to(x.device, x.dtype)


def generate_class_proxies(
    xs: list[torch.Tensor], labels: list[int], spec: GenSpec, seed: int
) -> list[torch.Tensor]:
    """Proxies for each class independently (every GEN stage with ``scope="class"``).

    Randomness for class ``label`` comes from ``(seed, method, label)`` only, so a class gets the
    same proxies whatever task it appears in and whatever else ran before. A ``batched`` stage (k-means) gets
    every class that needs it at once.
    """
    stage = gen_stage(spec.name, spec.target)
    if stage.scope != "class":
        raise ValueError(f"{spec.name} is solved jointly over classes; use generate_task_proxies")
    fn, args = stage.function(), dict(spec.args)
    out: list[torch.Tensor | None] = [None] * len(xs)
    pending: list[int] = []
    for i, (x, label) in enumerate(zip(xs, labels, strict=True)):
        if stage.reference_rules and (takes_all(x, spec.k) or (stage.uses_rows and x.shape[0] == 1)):
            out[i] = x
        elif spec.streaming:
            seed_of_class = class_seeds(spec, seed, [label])[0] if stage.seeded else None
            out[i] = resolve_function(stage.streaming)(iter(x.split(spec.batch_size)), spec.k, seed_of_class)
        elif stage.batched:
            pending.append(i)
        else:
            gen = generator(seed, stage.name, label, device=x.device) if stage.seeded else None
            out[i] = fn(x, spec.k, gen, **args)
            if stage.external:
                out[i] = check_proxies(stage, x, out[i])
    if pending:
        blocks = fn([xs[i] for i in pending], spec, class_seeds(spec, seed, [labels[i] for i in pending]))
        for i, block in zip(pending, blocks, strict=True):
            out[i] = block
    return [o for o in out if o is not None]


def probe_external_gen(spec: GenSpec) -> None:
    """Call an external GEN function once on a small made-up class (before any work), so that a wrong signature
    or output is a one-line ConfigError instead of a failed row per run."""
    stage = gen_stage(spec.name, spec.target)
    x = torch.randn(8, 4, generator=generator(0, "probe"))
    k = spec.k if isinstance(spec.k, int) and spec.k > 0 else 2
    try:
        out = stage.function()(x, k, generator(0, "probe", 0), **dict(spec.args))
    except TypeError as err:
        raise ConfigError(f"GEN function {stage.name} cannot be called as fn(x, k, generator"
                          f"{''.join(f', {a}=...' for a, _ in spec.args)}): {err}") from err
    except Exception as err:
        raise ConfigError(f"GEN function {stage.name} failed on a test class of 8 rows × 4 features: "
                          f"{type(err).__name__}: {err}") from err
    check_proxies(stage, x, out)


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
    means = torch.stack([g.to(torch.float64).mean(0) for g in groups])  # [G, d]
    return solve_least_squares(gram, n, means, lam).to(groups[0].dtype)


def solve_least_squares(gram: torch.Tensor, n: int, means: torch.Tensor, lam: float) -> torch.Tensor:
    """W [G, d] (float64) from the LS system's sufficient statistics: XᵀX over the N rows, N and the group means
    [G, d]. The joint solve and the extension of a saved head both go through here (the same arithmetic)."""
    system = gram / n
    system.diagonal().add_(lam)
    rhs = means.T  # [d, G]
    factor, info = torch.linalg.cholesky_ex(system)  # symmetric positive definite for λ > 0: half an LU
    w = torch.cholesky_solve(rhs, factor) if int(info) == 0 else torch.linalg.solve(system, rhs)
    return w.T / means.shape[0]


@dataclass
class LeastSquaresStatistics:
    """What ``ls``/``kls`` proxies are solved from, kept so that a head can take new classes exactly without the
    rows: XᵀX over the rows of the solved groups, their number, each group's mean and class, and the raw rows of
    classes that are not solved (kls: fewer rows than k)."""

    gram: torch.Tensor  # [d, d] float64
    rows: int
    means: torch.Tensor  # [G, d] float64
    group_class: torch.Tensor  # [G] int64: index of the class each group belongs to

    def add(self, other: LeastSquaresStatistics, class_offset: int) -> LeastSquaresStatistics:
        """These statistics with ``other``'s (classes numbered from ``class_offset``) added after them."""
        gram = self.gram.clone()
        gram += other.gram
        return LeastSquaresStatistics(gram, self.rows + other.rows, torch.cat([self.means, other.means]),
                                      torch.cat([self.group_class, other.group_class + class_offset]))


def least_squares_groups(xs: list[torch.Tensor], labels: list[int], spec: GenSpec,
                         seed: int) -> tuple[list[int], list[torch.Tensor]]:
    """The classes an ``ls``/``kls`` system solves and its groups: each class (ls, or kls with k = 1), or each
    solved class's k k-means pseudo-classes (kls; a class with fewer than k rows, or k = -1, keeps its raw rows and
    is left out, as in the reference)."""
    if spec.name == "ls" or spec.k == 1:
        return list(range(len(xs))), list(xs)
    solved = [i for i, x in enumerate(xs) if not takes_all(x, spec.k)]
    seeds = class_seeds(spec, seed, [labels[i] for i in solved])
    centers = kmeans([xs[i] for i in solved], spec.k, seeds, spec.backend, spec.kmeans_iters)
    groups: list[torch.Tensor] = []
    for i, c in zip(solved, centers, strict=True):
        assign = torch.cdist(xs[i], c).argmin(1)
        # an (unusual) empty cluster keeps its centre as a one-row pseudo-class, so every class has k rows;
        # that row is not part of the cached XᵀX, a negligible inconsistency in the LS system
        groups.extend(xs[i][assign == j] if bool((assign == j).any()) else c[j : j + 1] for j in range(spec.k))
    return solved, groups


def least_squares_statistics(xs: list[torch.Tensor], labels: list[int], spec: GenSpec, seed: int,
                             grams: list[torch.Tensor] | None = None) -> LeastSquaresStatistics:
    """The sufficient statistics of the ``ls``/``kls`` system over ``xs`` (per-class ``grams`` when cached)."""
    solved, groups = least_squares_groups(xs, labels, spec, seed)
    per_class = len(groups) // max(len(solved), 1)
    gram = summed([grams[i] if grams else gram_matrix(xs[i]) for i in solved]) if solved else None
    d = xs[0].shape[1]
    return LeastSquaresStatistics(
        gram if gram is not None else torch.zeros(d, d, dtype=torch.float64, device=xs[0].device),
        sum(int(g.shape[0]) for g in groups),
        torch.stack([g.to(torch.float64).mean(0) for g in groups]) if groups
        else torch.zeros(0, d, dtype=torch.float64, device=xs[0].device),
        torch.tensor([i for i in solved for _ in range(per_class)], dtype=torch.int64))


def least_squares_blocks(stats: LeastSquaresStatistics, lam: float, raw: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-class proxy blocks from the statistics: each solved class its groups' weights, the others ``raw``."""
    out = list(raw)
    if stats.means.shape[0]:
        w = solve_least_squares(stats.gram, stats.rows, stats.means, lam).to(raw[0].dtype)
        for i in stats.group_class.unique().tolist():
            out[i] = w[(stats.group_class == i).to(w.device)]
    return out


def joint_least_squares(
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
    solved, groups = least_squares_groups(xs, labels, spec, seed)
    gram = summed([grams[i] for i in solved]) if grams and solved else None
    weights = torch.split(least_squares_weights(groups, lam, gram), spec.k) if groups else []
    out = list(xs)
    for i, w in zip(solved, weights, strict=True):
        out[i] = w
    return out


def generate_task_proxies(
    xs: list[torch.Tensor],
    labels: list[int],
    spec: GenSpec,
    seed: int,
    lam: float,
    grams: list[torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """Proxies of a GEN stage solved jointly over the task's classes (``scope="task"``), one block per class."""
    stage = gen_stage(spec.name, spec.target)
    if stage.scope != "task":
        raise ValueError(f"{spec.name} generates each class on its own; use generate_class_proxies")
    return stage.function()(xs, labels, spec, seed, lam, grams)
