"""Clustering for GEN: k-means (faiss, batched torch, sklearn) and k-medoids (alternate, heuristic init).

All backends use k-means++ initialisation, run on every point (no subsampling) and stop at
convergence (≤ ``iters`` Lloyd iterations), so their quality matches sklearn's ``KMeans``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from imprint_bench.errors import check_choice

KMEANS_TOL = 1e-4  # relative tolerance, as sklearn's default
FAISS_EARLY_STOP = 1e-6  # relative objective change that ends faiss iterations


def kmeans(
    xs: list[torch.Tensor], k: int, seeds: list[int], backend: str = "faiss", iters: int = 300
) -> list[torch.Tensor]:
    """k centroids for each point set in ``xs`` (each needs at least k points); one seed per set."""
    check_choice("k-means backend", backend, ("faiss", "torch", "sklearn"))
    if not xs:
        return []
    if backend == "torch":
        return kmeans_torch_batched(xs, k, seeds, iters)
    fit = kmeans_faiss if backend == "faiss" else kmeans_sklearn
    return [fit(x, k, s, iters) for x, s in zip(xs, seeds, strict=True)]


def kmeans_faiss(x: torch.Tensor, k: int, seed: int, iters: int = 300) -> torch.Tensor:
    """faiss Lloyd iterations on all points, started from greedy k-means++ centres (as sklearn's init:
    faiss's own single-trial k-means++ lands in clearly worse optima on clustered classes). Uses faiss
    GPU when the data is on CUDA and faiss-gpu is installed."""
    import faiss

    data = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
    n, d = data.shape
    batch, mask = _pad([x.detach().to(torch.float32)])
    init = _kmeanspp_init(batch, mask, k, [torch.Generator(device=x.device).manual_seed(seed)])[0]
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
    """Stack variable-size sets into [B, n_max, d] with a validity mask [B, n_max]."""
    n_max = max(x.shape[0] for x in xs)
    d = xs[0].shape[1]
    batch = xs[0].new_zeros((len(xs), n_max, d))
    mask = torch.zeros((len(xs), n_max), dtype=torch.bool, device=xs[0].device)
    for i, x in enumerate(xs):
        batch[i, : x.shape[0]] = x
        mask[i, : x.shape[0]] = True
    return batch, mask


def _sq_dists(x: torch.Tensor, c: torch.Tensor, x_sq: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances [B, n, k] between padded points and centroids."""
    c_sq = (c * c).sum(-1)
    return (x_sq.unsqueeze(-1) - 2 * torch.bmm(x, c.transpose(1, 2)) + c_sq.unsqueeze(1)).clamp_min_(0)


def _kmeanspp_init(x: torch.Tensor, mask: torch.Tensor, k: int, gens: list[torch.Generator]) -> torch.Tensor:
    """Greedy k-means++ (2 + ⌊ln k⌋ trials per step, as sklearn) for every set in the batch."""
    b, _, d = x.shape
    x_sq = (x * x).sum(-1)
    trials = 2 + int(math.log(k))
    weights = mask.to(x.dtype)
    first = torch.stack([torch.multinomial(weights[i], 1, generator=gens[i]) for i in range(b)]).squeeze(1)
    centers = x.new_empty((b, k, d))
    centers[:, 0] = x[torch.arange(b), first]
    closest = _sq_dists(x, centers[:, :1], x_sq).squeeze(-1) * weights
    for j in range(1, k):
        probs = closest + (weights * 1e-30)  # keep every valid point drawable if all distances are 0
        cand = torch.stack(
            [torch.multinomial(probs[i], trials, replacement=True, generator=gens[i]) for i in range(b)]
        )
        cand_x = torch.gather(x, 1, cand.unsqueeze(-1).expand(b, trials, d))
        cand_d = _sq_dists(x, cand_x, x_sq)  # [B, n, T]
        pot = torch.minimum(closest.unsqueeze(-1), cand_d) * weights.unsqueeze(-1)
        best = pot.sum(1).argmin(1)
        centers[:, j] = cand_x[torch.arange(b), best]
        closest = pot[torch.arange(b), :, best]
    return centers


def kmeans_torch_batched(xs: list[torch.Tensor], k: int, seeds: list[int], iters: int = 300) -> list[torch.Tensor]:
    """Lloyd k-means for all sets at once on their device (one batched kernel per step; CUDA-friendly)."""
    x, mask = _pad([t.to(torch.float32) for t in xs])
    gens = [torch.Generator(device=x.device).manual_seed(s) for s in seeds]
    centers = _kmeanspp_init(x, mask, k, gens)
    weights = mask.to(x.dtype)
    x_sq = (x * x).sum(-1)
    counts_n = weights.sum(1)
    mean = (x * weights.unsqueeze(-1)).sum(1) / counts_n.unsqueeze(-1)
    var = (((x - mean.unsqueeze(1)) ** 2) * weights.unsqueeze(-1)).sum(1) / counts_n.unsqueeze(-1)
    tol = KMEANS_TOL * var.mean(-1)  # sklearn: tol × mean feature variance, per set
    for _ in range(iters):
        dist = _sq_dists(x, centers, x_sq)
        assign = dist.argmin(-1)
        onehot = torch.nn.functional.one_hot(assign, k).to(x.dtype) * weights.unsqueeze(-1)
        counts = onehot.sum(1)  # [B, k]
        sums = torch.bmm(onehot.transpose(1, 2), x)
        new = torch.where(counts.unsqueeze(-1) > 0, sums / counts.clamp_min(1).unsqueeze(-1), centers)
        empty = counts == 0
        if bool(empty.any()):  # relocate empty clusters to the points farthest from their centre
            far = (dist.gather(-1, assign.unsqueeze(-1)).squeeze(-1) * weights).argsort(1, descending=True)
            for bi, ci in empty.nonzero().tolist():
                new[bi, ci] = x[bi, far[bi, ci]]
        shift = ((new - centers) ** 2).sum((1, 2))
        centers = new
        if bool((shift <= tol).all()):
            break
    return [centers[i] for i in range(len(xs))]


def kmedoids(x: torch.Tensor, k: int, max_iter: int = 300) -> torch.Tensor:
    """Indices of k medoids: 'alternate' k-medoids with the deterministic 'heuristic' init (sklearn-extra's
    defaults, which the reference used): start from the k points with the smallest total distance."""
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
