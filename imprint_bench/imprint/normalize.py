"""NORM stages (registered in ``registry.py``): NORMpre / NORMinf (none, l2, cl2n) on features and NORMpost (none, l2,
quantile) on proxies."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from imprint_bench.imprint.registry import check_norm


def identity_features(x: torch.Tensor, center: torch.Tensor | None = None) -> torch.Tensor:
    """``none``: unchanged."""
    return x


def l2_features(x: torch.Tensor, center: torch.Tensor | None = None) -> torch.Tensor:
    """``l2``: x / max(‖x‖₂, 1e-12). (The reference's NORMpre divides with no epsilon, turning zero rows into NaN;
    we keep them zero. Deliberate difference.)"""
    return F.normalize(x, p=2, dim=1, eps=1e-12)


def cl2n_features(x: torch.Tensor, center: torch.Tensor | None = None) -> torch.Tensor:
    """``cl2n``: subtract ``center`` (the task's train mean, SimpleShot), then L2."""
    if center is None:
        raise ValueError("cl2n needs the task's train mean as `center`")
    return F.normalize(x - center, p=2, dim=1, eps=1e-12)


def normalize_features(x: torch.Tensor, kind: str, center: torch.Tensor | None = None) -> torch.Tensor:
    """NORMpre / NORMinf: the registered NORM kind ``kind`` on the rows of ``x`` (``center``: the task's train
    mean)."""
    return check_norm("inf", kind).feature_fn()(x, center)


class WeightedSortedValues:
    """A multiset of floats kept as sorted distinct runs with multiplicities.

    Quantile normalisation maps each later class onto exactly the same multiset of values, so the
    growing reference distribution is stored compactly: one entry per value run, not per element.
    """

    def __init__(self, device: torch.device) -> None:
        self.values = torch.empty(0, dtype=torch.float32, device=device)
        self.counts = torch.empty(0, dtype=torch.int64, device=device)

    @property
    def total(self) -> int:
        return int(self.counts.sum()) if self.counts.numel() else 0

    def add(self, values: torch.Tensor, multiplicity: int = 1) -> None:
        """Add every element of ``values`` ``multiplicity`` times (sort the new values, merge in O(n))."""
        new = torch.sort(values.flatten().to(torch.float32)).values
        new_counts = torch.full((new.numel(),), multiplicity, dtype=torch.int64, device=new.device)
        if self.values.numel() == 0:
            self.values, self.counts = new, new_counts
            return
        n = self.values.numel() + new.numel()
        slots = torch.searchsorted(self.values, new, right=True) + torch.arange(new.numel(), device=new.device)
        is_new = torch.zeros(n, dtype=torch.bool, device=new.device)
        is_new[slots] = True
        values = torch.empty(n, dtype=torch.float32, device=new.device)
        counts = torch.empty(n, dtype=torch.int64, device=new.device)
        values[slots], counts[slots] = new, new_counts
        values[~is_new], counts[~is_new] = self.values, self.counts
        self.values, self.counts = values, counts

    def quantiles(self, q: torch.Tensor) -> torch.Tensor:
        """``torch.quantile(expanded, q)`` with linear interpolation, computed on the compact form."""
        n = self.total
        cum = torch.cumsum(self.counts, 0)
        pos = q.to(torch.float32) * (n - 1)  # float32 arithmetic, as torch.quantile does
        lo = pos.to(torch.int64)
        hi = torch.clamp(lo + 1, max=n - 1)
        frac = pos - lo.to(torch.float32)
        v_lo = self.values[torch.searchsorted(cum, lo, right=True)]
        v_hi = self.values[torch.searchsorted(cum, hi, right=True)]
        return torch.lerp(v_lo, v_hi, frac)


def quantile_targets(dim: int, device: torch.device) -> torch.Tensor:
    """The reference's discrete quantile levels q_i = (i + ½)/dim, built in float32 as it does."""
    return torch.arange(0, 1, 1 / dim, dtype=torch.float32, device=device)[:dim] + 1 / (2 * dim)


def rank_assign(x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Give the element of rank r in each row of ``x`` the value ``targets[r]`` (row order preserved)."""
    order = torch.argsort(x, dim=1, stable=True)
    out = torch.empty_like(x)
    out.scatter_(1, order, targets.to(x.dtype).expand_as(x).contiguous())
    return out


def quantile_normalize_classes(proxies: list[torch.Tensor]) -> list[torch.Tensor]:
    """Hosoda-style quantile NORMpost with the reference's sequential semantics (spec §4.3).

    Classes are processed in task order. The first class is left unchanged; every later class is
    mapped onto the quantiles of all proxies already imprinted (earlier classes, after mapping).
    Unlike the reference we never subsample the reference distribution (its stride subsampling
    biased the estimate for large ``all`` proxy sets); results are exact for any size.
    """
    if not proxies:
        return []
    device = proxies[0].device
    dim = proxies[0].shape[1]
    q = quantile_targets(dim, device)
    ref = WeightedSortedValues(device)
    out = [proxies[0]]
    ref.add(proxies[0])
    for p in proxies[1:]:
        y = ref.quantiles(q)
        out.append(rank_assign(p, y))
        ref.add(y, multiplicity=p.shape[0])
    return out


def quantile_normalize_after(proxies: list[torch.Tensor], earlier: list[torch.Tensor]) -> list[torch.Tensor]:
    """quantile NORMpost of classes that come after ``earlier`` ones (already normalised): the same result as one
    pass over all of them, since the earlier outputs are the pool (a mapped class's rows each hold its quantile
    vector, so they add the same multiset as the sequential pass)."""
    if not earlier:
        return quantile_normalize_classes(proxies)
    q = quantile_targets(proxies[0].shape[1], proxies[0].device)
    ref = WeightedSortedValues(proxies[0].device)
    for block in earlier:
        ref.add(block)
    out = []
    for p in proxies:
        y = ref.quantiles(q)
        out.append(rank_assign(p, y))
        ref.add(y, multiplicity=p.shape[0])
    return out


def identity_proxies(proxies: list[torch.Tensor]) -> list[torch.Tensor]:
    """``none``: unchanged."""
    return list(proxies)


def l2_proxies(proxies: list[torch.Tensor]) -> list[torch.Tensor]:
    """``l2``: every proxy scaled to unit L2 norm."""
    return [F.normalize(p, p=2, dim=1, eps=1e-12) for p in proxies]


def normalize_proxies(proxies: list[torch.Tensor], kind: str) -> list[torch.Tensor]:
    """NORMpost: the registered NORM kind ``kind`` on per-class proxy blocks, in task order."""
    return check_norm("post", kind).proxy_fn()(proxies)
