"""Clustering for GEN: k-means (batched torch, faiss, sklearn) and k-medoids (alternate, heuristic init), and the
choice of k per class from the class's own points (``gen.k=auto``).

All backends use greedy k-means++ initialisation, run on every point (no subsampling) and stop at
convergence (≤ ``iters`` Lloyd iterations), so their quality matches sklearn's ``KMeans``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from imprint_bench.errors import check_choice

KMEANS_TOL = 1e-4  # relative tolerance, as sklearn's default
FAISS_EARLY_STOP = 1e-6  # relative objective change that ends faiss iterations
BATCH_BYTES = 256 * 2**20  # padded float32 data of one batch of the torch backend
FAISS_MIN_ROWS = 1000  # gen.backend=auto on the CPU: faiss for sets at least this large, batched torch below


def kmeans(
    xs: list[torch.Tensor], k: int, seeds: list[int], backend: str = "auto", iters: int = 300
) -> list[torch.Tensor]:
    """k centroids for each point set in ``xs`` (each needs at least k points); one seed per set.

    ``auto`` picks per set by measurement (``make bench``, k-means suite, 2 CPU cores): the batched torch
    backend for sets under ``FAISS_MIN_ROWS`` rows (3× faster than faiss at 130 rows, even at 600) and faiss
    for larger ones (1.4× faster at 6,000 × 2,048); on CUDA the batched torch backend runs on the GPU."""
    check_choice("k-means backend", backend, ("auto", "torch", "faiss", "sklearn"))
    if not xs:
        return []
    if backend == "sklearn":
        return [kmeans_sklearn(x, k, s, iters) for x, s in zip(xs, seeds, strict=True)]
    if backend == "faiss":
        return [kmeans_faiss(x, k, s, iters) for x, s in zip(xs, seeds, strict=True)]
    out = list(xs)  # each entry is replaced by its centroids below
    small = []
    for i, x in enumerate(xs):
        if backend == "auto" and x.device.type == "cpu" and x.shape[0] >= FAISS_MIN_ROWS:
            out[i] = kmeans_faiss(x, k, seeds[i], iters)
        else:
            small.append(i)
    if small:
        for i, centers in zip(small, kmeans_torch_batched([xs[i] for i in small], k, [seeds[i] for i in small],
                                                          iters), strict=True):
            out[i] = centers
    return out


def kmeans_faiss(x: torch.Tensor, k: int, seed: int, iters: int = 300) -> torch.Tensor:
    """faiss Lloyd iterations on all points, started from greedy k-means++ centres (as sklearn's init:
    faiss's own single-trial k-means++ lands in clearly worse optima on clustered classes). Uses faiss
    GPU when the data is on CUDA and faiss-gpu is installed."""
    import faiss

    data = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
    n, d = data.shape
    batch, mask = _pad([x.detach().to(torch.float32)])
    init = _kmeanspp_init(batch, mask, k, [seed])[0]
    use_gpu = x.is_cuda and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    km = faiss.Kmeans(
        d,
        k,
        niter=iters,
        seed=seed,
        max_points_per_centroid=max(n, 1),  # never subsample
        min_points_per_centroid=1,  # no warning for small classes
        early_stop_threshold=FAISS_EARLY_STOP,
        gpu=1 if use_gpu else False,
        verbose=False,
    )
    km.train(data, init_centroids=np.ascontiguousarray(init.to("cpu").numpy()))
    return torch.from_numpy(km.centroids.copy()).to(x.device)


def kmeans_sklearn(x: torch.Tensor, k: int, seed: int, iters: int = 300) -> torch.Tensor:
    """sklearn KMeans exactly as the reference calls it (k-means++, n_init=1); for parity checks."""
    from sklearn.cluster import KMeans

    data = x.detach().to("cpu", torch.float32).numpy()
    km = KMeans(n_clusters=k, random_state=seed, n_init=1, max_iter=iters).fit(data)
    return torch.from_numpy(km.cluster_centers_.astype(np.float32)).to(x.device)


def _pad(xs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack variable-size sets into [B, n_max, d] (each set's rows first) with a validity mask [B, n_max]."""
    n_max = max(x.shape[0] for x in xs)
    d = xs[0].shape[1]
    batch = xs[0].new_zeros((len(xs), n_max, d))
    mask = torch.zeros((len(xs), n_max), dtype=torch.bool, device=xs[0].device)
    for i, x in enumerate(xs):
        batch[i, : x.shape[0]] = x
        mask[i, : x.shape[0]] = True
    return batch, mask


def _kmeanspp_init(x: torch.Tensor, mask: torch.Tensor, k: int, seeds: list[int]) -> torch.Tensor:
    """Greedy k-means++ (2 + ⌊ln k⌋ candidates per step, as sklearn) for every set of the batch at once.

    Each set draws its uniforms from its own seed, all up front, and samples candidates by inverting the
    cumulative D² weights: a set's centres do not depend on the other sets of the batch."""
    b, _, d = x.shape
    dev = x.device
    trials = 2 + int(math.log(k))
    x_sq = (x * x).sum(-1)
    weights = mask.to(x.dtype)
    last = (mask.sum(1) - 1).unsqueeze(1)  # index of each set's last real row (rows are a prefix)
    draws = torch.stack([torch.rand(1 + (k - 1) * trials, generator=torch.Generator().manual_seed(s),
                                    dtype=torch.float64) for s in seeds]).to(dev)
    rows = torch.arange(b, device=dev)
    first = (draws[:, :1] * (last + 1)).long().clamp_max(last).squeeze(1)
    centers = x.new_empty((b, k, d))
    centers[:, 0] = x[rows, first]
    closest = (x_sq - 2 * torch.bmm(x, centers[:, :1].transpose(1, 2)).squeeze(-1)
               + x_sq[rows, first].unsqueeze(1)).clamp_min_(0) * weights
    for j in range(1, k):
        cdf = torch.cumsum(closest.to(torch.float64), dim=1)
        u = draws[:, 1 + (j - 1) * trials : 1 + j * trials] * cdf[:, -1:]
        cand = torch.minimum(torch.searchsorted(cdf, u, right=True), last)  # [B, T]
        cand_x = torch.gather(x, 1, cand.unsqueeze(-1).expand(b, trials, d))
        cand_d = (x_sq.unsqueeze(-1) - 2 * torch.bmm(x, cand_x.transpose(1, 2))
                  + torch.gather(x_sq, 1, cand).unsqueeze(1)).clamp_min_(0)  # [B, n, T]
        pot = torch.minimum(closest.unsqueeze(-1), cand_d) * weights.unsqueeze(-1)
        best = pot.sum(1).argmin(1)
        centers[:, j] = cand_x[rows, best]
        closest = pot[rows, :, best]
    return centers


def _batches(sizes: list[int], d: int) -> list[list[int]]:
    """Indices of the sets, largest first, cut into batches whose padded data stays under ``BATCH_BYTES``."""
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i])
    out: list[list[int]] = []
    for i in order:
        if out and (len(out[-1]) + 1) * sizes[out[-1][0]] * d * 4 <= BATCH_BYTES:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def kmeans_torch_batched(xs: list[torch.Tensor], k: int, seeds: list[int], iters: int = 300) -> list[torch.Tensor]:
    """Lloyd k-means for many sets at once on their device (batched kernels per step), stopping each set at
    sklearn's tolerance. Sets are batched by size so that padding stays small and memory bounded."""
    out: list[torch.Tensor] = [xs[0]] * len(xs)
    for idx in _batches([int(x.shape[0]) for x in xs], int(xs[0].shape[1])):
        x, mask = _pad([xs[i].to(torch.float32) for i in idx])
        centers = _lloyd(x, mask, _kmeanspp_init(x, mask, k, [seeds[i] for i in idx]), iters)
        for j, i in enumerate(idx):
            out[i] = centers[j]
    return out


def _lloyd(x: torch.Tensor, mask: torch.Tensor, centers: torch.Tensor, iters: int) -> torch.Tensor:
    """Lloyd iterations from ``centers``; a set stops (its centres freeze) once its squared centre shift is at
    most sklearn's tol = 1e-4 × mean feature variance. Empty clusters move to the farthest points."""
    b, n, d = x.shape
    k = centers.shape[1]
    valid = mask.reshape(-1)
    points = x.reshape(-1, d)[valid]
    offset = (torch.arange(b, device=x.device) * k).unsqueeze(1).expand(b, n).reshape(-1)[valid]
    count_n = mask.sum(1).to(torch.float64)
    mean = x.sum(1).to(torch.float64) / count_n.unsqueeze(1)
    sq = (x * x).sum((1, 2)).to(torch.float64)
    tol = KMEANS_TOL * (sq / count_n - (mean * mean).sum(1)) / d  # sklearn: tol × mean feature variance
    active = torch.ones(b, dtype=torch.bool, device=x.device)
    for _ in range(iters):
        scores = torch.baddbmm((centers * centers).sum(-1).unsqueeze(1), x, centers.transpose(1, 2), alpha=-2)
        assign = scores.argmin(-1).reshape(-1)[valid] + offset  # ‖x‖² does not change the argmin
        sums = torch.zeros((b * k, d), dtype=x.dtype, device=x.device).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=b * k).to(x.dtype)
        new = (sums / counts.clamp_min(1).unsqueeze(1)).view(b, k, d)
        empty = (counts == 0).view(b, k)
        if bool(empty.any()):
            new = _relocate_empty(x, mask, scores, new, empty)
        shift = ((new - centers) ** 2).sum((1, 2)).to(torch.float64)
        centers = torch.where(active.view(b, 1, 1), new, centers)
        active &= shift > tol
        if not bool(active.any()):
            break
    return centers


def _relocate_empty(x: torch.Tensor, mask: torch.Tensor, scores: torch.Tensor, new: torch.Tensor,
                    empty: torch.Tensor) -> torch.Tensor:
    """Move each empty cluster to a point far from its centre (farthest first, as sklearn)."""
    dist = scores.min(-1).values + (x * x).sum(-1)
    far = dist.masked_fill(~mask, float("-inf")).argsort(1, descending=True)
    new = new.clone()
    for bi, ci in empty.nonzero().tolist():
        new[bi, ci] = x[bi, far[bi, ci]]
    return new


def kmedoids(x: torch.Tensor, k: int, max_iter: int = 300, dist: torch.Tensor | None = None) -> torch.Tensor:
    """Indices of k medoids: 'alternate' k-medoids with the deterministic 'heuristic' init (sklearn-extra's
    defaults, which the reference used): start from the k points with the smallest total distance. ``dist``: the
    rows' pairwise euclidean distances, when already computed."""
    if dist is None:
        dist = torch.cdist(x.to(torch.float32), x.to(torch.float32))
    medoids = torch.topk(dist.sum(1), k, largest=False).indices.sort().values
    for _ in range(max_iter):
        labels = dist[:, medoids].argmin(1)
        new = medoids.clone()
        for c in range(k):
            members = (labels == c).nonzero().squeeze(1)
            if members.numel() == 0:
                continue
            costs = dist[members][:, members].sum(1)
            best = members[costs.argmin()]
            if costs.min() < dist[medoids[c], members].sum():
                new[c] = best
        if torch.equal(new, medoids):
            break
        medoids = new
    return medoids


def inertia(x: torch.Tensor, centers: torch.Tensor) -> float:
    """Sum of squared distances of each point to its nearest centre."""
    return float(torch.cdist(x.double(), centers.double()).min(1).values.pow(2).sum())


# ---- gen.k=auto: k per class, from the class's own points ----

#: The k values gen.k=auto tries (those below the class's row count).
AUTO_K_LADDER = (1, 2, 3, 4, 6, 8, 12, 16, 20, 30, 40)
#: Mean silhouette a clustering with k >= 2 must reach to beat k = 1. Kaufman & Rousseeuw's 0.25 ("no substantial
#: structure" below) is too strict in high dimension, where distances concentrate: well-separated modes in 64–256-d
#: score 0.15–0.3, a single Gaussian mode 0.00–0.12 (more when it is anisotropic).
SILHOUETTE_MIN = 0.1
#: Rows whose silhouettes are averaged (evenly spaced; all rows of smaller classes), to bound the distance matrix.
SILHOUETTE_ROWS = 2000
#: Candidate centres held at once by ``kmeans_auto`` (float32 bytes): classes are fitted in chunks under it.
AUTO_CHUNK_BYTES = 256 * 2**20


def candidate_ks(n_rows: int) -> list[int]:
    """The ladder's k values below ``n_rows`` (k = n would leave no residual to judge a fit by), at least [1]."""
    return [k for k in AUTO_K_LADDER if k < n_rows] or [1]


def _assign(x: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Index of each row's nearest centre."""
    scores = (centers * centers).sum(1) - 2 * (x @ centers.T)  # ‖x‖² does not change the argmin
    return scores.argmin(1)


def bic_scores(x: torch.Tensor, candidates: list[torch.Tensor]) -> list[float]:
    """BIC of a spherical Gaussian mixture at each candidate's hard k-means solution (X-means, Pelleg & Moore 2000,
    with the unbiased variance SSE / (d·(n − k))); larger is better:
    Σ n_j log n_j − n log n − n·d/2 · log(2πσ²) − d·(n − k)/2 − ((k − 1) + k·d + 1)/2 · log n."""
    n, d = x.shape
    xf = x.to(torch.float32)
    out = []
    for centers in candidates:
        k = int(centers.shape[0])
        assign = _assign(xf, centers.to(xf))
        sse = float(((xf - centers.to(xf)[assign]).double() ** 2).sum())
        if n <= k:
            out.append(-math.inf)
            continue
        if sse <= 0.0:  # every row on a centre: nothing better is possible
            out.append(math.inf)
            continue
        sizes = torch.bincount(assign, minlength=k).double()
        sizes = sizes[sizes > 0]
        variance = sse / (d * (n - k))
        log_likelihood = (
            float((sizes * sizes.log()).sum())
            - n * math.log(n)
            - n * d / 2 * math.log(2 * math.pi * variance)
            - d * (n - k) / 2
        )
        out.append(log_likelihood - ((k - 1) + k * d + 1) / 2 * math.log(n))
    return out


def silhouette_scores(x: torch.Tensor, candidates: list[torch.Tensor]) -> list[float]:
    """Mean silhouette (euclidean) of each candidate's hard assignment, over at most ``SILHOUETTE_ROWS`` evenly
    spaced rows (distances to every row); k = 1 scores ``SILHOUETTE_MIN``, so it wins unless some k >= 2 beats
    that threshold. Larger is better."""
    n = x.shape[0]
    xf = x.to(torch.float32)
    rows = torch.linspace(0, n - 1, min(n, SILHOUETTE_ROWS), device=x.device).round().long()
    dist = torch.cdist(xf[rows], xf).double()  # [rows, n]
    out = []
    for centers in candidates:
        k = int(centers.shape[0])
        if k == 1:
            out.append(SILHOUETTE_MIN)
            continue
        assign = _assign(xf, centers.to(xf))
        sizes = torch.bincount(assign, minlength=k).double()
        sums = dist @ torch.nn.functional.one_hot(assign, k).double()  # [rows, k]: distances to each cluster
        own = assign[rows].unsqueeze(1)
        own_size = sizes[own.squeeze(1)]
        within = sums.gather(1, own).squeeze(1) / (own_size - 1).clamp_min(1)  # a row's distance to itself is 0
        others = (sums / sizes.clamp_min(1)).scatter(1, own, math.inf).masked_fill(sizes == 0, math.inf)
        nearest = others.min(1).values
        silhouette = ((nearest - within) / torch.maximum(within, nearest)).nan_to_num(0.0)
        out.append(float(torch.where(own_size > 1, silhouette, 0.0).mean()))  # singletons score 0
    return out


#: Criteria of gen.k=auto by name: scores of candidate centres on a class's points, larger is better.
CRITERIA: dict[str, Callable[[torch.Tensor, list[torch.Tensor]], list[float]]] = {
    "bic": bic_scores,
    "silhouette": silhouette_scores,
}
#: The criterion of gen.k=auto: it recovered the number of modes of synthetic classes within ±1 for 93% of them,
#: BIC for 55% (BIC's spherical model splits anisotropic modes); ``scripts/bench.py --suite auto_k``.
AUTO_K_CRITERION = "silhouette"


def choose_k(x: torch.Tensor, candidates: list[torch.Tensor], criterion: str = AUTO_K_CRITERION) -> int:
    """Index of the best candidate by ``criterion`` (the first of equals, i.e. the smallest k)."""
    check_choice("k criterion", criterion, CRITERIA)
    scores = CRITERIA[criterion](x, candidates)
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def kmeans_ladder(xs: list[torch.Tensor], seeds: list[int], backend: str = "auto",
                  iters: int = 300) -> list[list[torch.Tensor]]:
    """k-means centres of each set for each of its ``candidate_ks`` (k = 1: the mean), one batched ``kmeans`` call
    per k over the sets that have more rows than k; each set keeps its seed for every k."""
    out = [[x.mean(0, keepdim=True).to(torch.float32)] for x in xs]
    for k in AUTO_K_LADDER[1:]:
        fit = [i for i, x in enumerate(xs) if x.shape[0] > k]
        if not fit:
            break
        for i, centers in zip(fit, kmeans([xs[i] for i in fit], k, [seeds[i] for i in fit], backend, iters),
                              strict=True):
            out[i].append(centers)
    return out


def kmeans_auto(xs: list[torch.Tensor], seeds: list[int], backend: str = "auto", iters: int = 300,
                criterion: str = AUTO_K_CRITERION) -> list[torch.Tensor]:
    """k-means centres of each set with k chosen per set by ``criterion`` among its ``candidate_ks`` (the chosen
    fit's centres, no refit). Sets are fitted in chunks whose candidate centres stay under ``AUTO_CHUNK_BYTES``."""
    check_choice("k criterion", criterion, CRITERIA)
    if not xs:
        return []
    per_set = sum(AUTO_K_LADDER) * int(xs[0].shape[1]) * 4
    chunk = max(1, AUTO_CHUNK_BYTES // per_set)
    out: list[torch.Tensor] = []
    for start in range(0, len(xs), chunk):
        part = xs[start : start + chunk]
        for x, candidates in zip(part, kmeans_ladder(part, seeds[start : start + chunk], backend, iters),
                                 strict=True):
            out.append(candidates[choose_k(x, candidates, criterion)])
    return out


def kmedoids_auto(x: torch.Tensor, criterion: str = AUTO_K_CRITERION) -> torch.Tensor:
    """Indices of the k-medoids of ``x`` with k chosen by ``criterion`` among ``candidate_ks`` (deterministic, as
    ``kmedoids``; the distance matrix is computed once)."""
    dist = torch.cdist(x.to(torch.float32), x.to(torch.float32))
    fits = [kmedoids(x, k, dist=dist) for k in candidate_ks(x.shape[0])]
    return fits[choose_k(x, [x[f] for f in fits], criterion)]
