"""AGG (registered in ``registry.py``): class scores from proxies. ``max`` = max inner product over a class's
proxies; ``mnn`` = vote of the m nearest proxies under a distance, uniform or inverse-distance weighted. Ties go to
the lowest class index (``argmax`` returns the first maximum)."""

from __future__ import annotations

import torch

from imprint_bench.errors import ConfigError
from imprint_bench.imprint.registry import AGG, DISTANCE, WEIGHTING, resolve_function
from imprint_bench.imprint.spec import AggSpec

#: Elements of one [chunk, P] score/distance block; bounds peak memory (~256 MB in float32).
BLOCK_ELEMENTS = 1 << 26


def _row_blocks(n_rows: int, n_cols: int) -> list[slice]:
    """Row slices such that each [rows, n_cols] block has at most ``BLOCK_ELEMENTS`` elements."""
    step = max(1, BLOCK_ELEMENTS // max(n_cols, 1))
    return [slice(start, start + step) for start in range(0, n_rows, step)]


def max_scores(x: torch.Tensor, proxies: torch.Tensor, owner: torch.Tensor, n_classes: int) -> torch.Tensor:
    """[N, C] scores: for each class the max inner product of x with that class's proxies."""
    out = x.new_empty((x.shape[0], n_classes))
    for rows in _row_blocks(x.shape[0], proxies.shape[0]):
        s = x[rows] @ proxies.T
        block = s.new_full((s.shape[0], n_classes), float("-inf"))
        out[rows] = block.scatter_reduce_(1, owner.expand(s.shape[0], -1), s, reduce="amax", include_self=True)
    return out


def mahalanobis_whitener(proxies: torch.Tensor) -> torch.Tensor:
    """L with VI = L Lᵀ, VI = inv(cov(proxies) + 1e-6·I) as the reference (covariance over proxies,
    ddof=1), so that the Mahalanobis distance is the Euclidean distance after multiplying by L."""
    if proxies.shape[0] < 2:
        raise ConfigError("mahalanobis distance needs at least 2 proxies in total to estimate a covariance")
    p = proxies.to(torch.float64)
    cov = torch.cov(p.T) + 1e-6 * torch.eye(p.shape[1], dtype=p.dtype, device=p.device)
    vi = torch.linalg.inv(cov)
    vi = (vi + vi.T) / 2
    return torch.linalg.cholesky(vi)


def cosine_distances(x: torch.Tensor, proxies: torch.Tensor) -> torch.Tensor:
    """1 − cosine similarity."""
    xn = torch.nn.functional.normalize(x, dim=1)
    pn = torch.nn.functional.normalize(proxies, dim=1)
    return 1.0 - xn @ pn.T


def euclidean_distances(x: torch.Tensor, proxies: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x, proxies, p=2.0)


def exact_euclidean_distances(x: torch.Tensor, proxies: torch.Tensor) -> torch.Tensor:
    """Euclidean without the GEMM expansion (Mahalanobis: whitened coordinates are large, avoid cancellation)."""
    return torch.cdist(x, proxies, p=2.0, compute_mode="donot_use_mm_for_euclid_dist")


def manhattan_distances(x: torch.Tensor, proxies: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x, proxies, p=1.0)


def chebyshev_distances(x: torch.Tensor, proxies: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x, proxies, p=float("inf"))


def distances(x: torch.Tensor, proxies: torch.Tensor, metric: str) -> torch.Tensor:
    """[N, P] distances of rows of x to proxies under the registered distance ``metric`` (x and proxies already
    whitened for mahalanobis)."""
    stage = DISTANCE.get(metric)
    if not stage.fn:
        raise ConfigError(f"{metric} is not an m-NN distance; valid: "
                          f"{', '.join(d.name for d in DISTANCE if d.fn)}")
    return stage.function()(x, proxies)


def nearest_proxies(
    x: torch.Tensor, proxies: torch.Tensor, metric: str, m: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances and indices [N, m'] of the m' = min(m, P) nearest proxies, nearest first."""
    m = min(m, proxies.shape[0])
    stage = DISTANCE.get(metric)
    if stage.prepare:
        whiten = resolve_function(stage.prepare)(proxies)
        x = (x.to(torch.float64) @ whiten).to(x.dtype)
        proxies = (proxies.to(torch.float64) @ whiten).to(proxies.dtype)
    dists, idx = [], []
    for rows in _row_blocks(x.shape[0], proxies.shape[0]):
        d = distances(x[rows], proxies, metric)
        top = torch.topk(d, m, dim=1, largest=False, sorted=True)
        dists.append(top.values)
        idx.append(top.indices)
    return torch.cat(dists), torch.cat(idx)


def uniform_weights(dist: torch.Tensor) -> torch.Tensor:
    """One vote per neighbour."""
    return torch.ones_like(dist)


def inverse_distance_weights(dist: torch.Tensor) -> torch.Tensor:
    """Votes weighted by 1/(distance + 1e-10), as the reference."""
    return 1.0 / (dist + 1e-10)


def vote_scores(
    dist: torch.Tensor, idx: torch.Tensor, owner: torch.Tensor, n_classes: int, m: int, weighting: str
) -> torch.Tensor:
    """[N, C] votes of the first m neighbours, weighted by the registered ``weighting``."""
    dist, idx = dist[:, :m], idx[:, :m]
    weights = WEIGHTING.get(weighting).function()(dist)
    votes = dist.new_zeros((dist.shape[0], n_classes))
    return votes.scatter_add_(1, owner[idx], weights)


def class_scores(
    x: torch.Tensor, proxies: torch.Tensor, owner: torch.Tensor, n_classes: int, agg: AggSpec
) -> torch.Tensor:
    """[N, C] class scores for one (canonical) AGG configuration; argmax gives the prediction."""
    stage = AGG.get(agg.name)
    if not stage.neighbours:
        return stage.function()(x, proxies, owner, n_classes)
    dist, idx = nearest_proxies(x, proxies, agg.distance, agg.m)
    return stage.function()(dist, idx, owner, n_classes, agg.m, agg.weighting)
