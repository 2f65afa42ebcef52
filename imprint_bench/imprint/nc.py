"""Neural-collapse measures NC1 and VCI of a feature set (spec §7, paper §3.2).

NC1 = Tr(Σ_W Σ_B⁺) / C (Papyan et al. 2020; Zhu et al. 2021), with

- Σ_W = (1/C) Σ_c Cov_c, the unweighted mean over classes of the within-class covariance
  Cov_c = (1/n_c) Σ_{i∈c} (x_i − μ_c)(x_i − μ_c)ᵀ;
- Σ_B = (1/C) Σ_c (μ_c − μ_G)(μ_c − μ_G)ᵀ, also unweighted by class size, μ_G the mean of all samples.

``reference_centring=True`` reproduces the DATEXIS/IMPRINT code, which centres each class's samples on
μ_c − μ_G instead of μ_c, so that its Σ_W is mean_c Cov_c + μ_G μ_Gᵀ (spec §7.2). Use it to compare with the
paper's NC1 values; the textbook value is the default.

Everything is computed in float64. Σ_B has rank ≤ C − 1, so Σ_B⁺ is obtained from the pseudo-inverse of the
C × d matrix M of centred class means (Σ_B = MᵀM / C ⇒ Σ_B⁺ = C · M⁺ M⁺ᵀ); NC1 then costs O(n·d·C) and never
forms a d × d matrix. The rank cut-off mirrors ``torch.linalg.pinv(Σ_B)`` at the input's precision:
eigenvalues of Σ_B below ``rtol · λ_max`` count as zero, with ``rtol = max(C, d) · eps(input dtype)`` unless
given (float32 features: ≈ 2.4e-4 for d = 2048, as in the reference).

The features are used as passed; the runner L2-normalises them first, as the reference did. Samples with a
negative label (the reference's "unmapped", −1) are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

__all__ = ["ClassScatter", "NCStats", "class_scatter", "nc1", "nc1_both", "nc1_of_classes", "nc_stats", "vci"]


@dataclass(frozen=True)
class NCStats:
    """NC1 and friends for one feature set (the columns of the reference's NC CSV)."""

    nc1: float
    vci: float
    intra_trace: float  # Tr(Σ_W)
    inter_trace: float  # Tr(Σ_B)
    inter_rank: int  # numerical rank of Σ_B used for Σ_B⁺
    n_classes: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


_CHUNK = 1024  # rows converted to float64 at a time: small reusable buffers, never a second copy of the input


@dataclass(frozen=True)
class _Moments:
    x: torch.Tensor  # (n, d) in the input dtype, on the CPU
    inv: torch.Tensor  # (n,) class index per sample
    counts: torch.Tensor  # (C,)
    means: torch.Tensor  # (C, d)
    mu_g: torch.Tensor  # (d,)
    rtol: float


def _prepare(x: torch.Tensor, y: torch.Tensor, rtol: float | None) -> _Moments | None:
    """Validate, drop negative labels, compute class means; None when fewer than 2 classes remain."""
    x = torch.as_tensor(x)
    y = torch.as_tensor(y).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"nc1 expects x of shape (n, d) and y of shape (n,), got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    eps = torch.finfo(x.dtype).eps if x.is_floating_point() else torch.finfo(torch.float64).eps
    x, y = x.detach().to("cpu"), y.to("cpu")
    keep = y >= 0
    if not bool(keep.all()):
        x, y = x[keep], y[keep]
    classes, inv, counts = torch.unique(y, return_inverse=True, return_counts=True)
    c, d = len(classes), x.shape[1]
    if c < 2:
        return None
    sums = torch.zeros(c, d, dtype=torch.float64)
    for lo, xb in _chunks(x):
        sums.index_add_(0, inv[lo : lo + len(xb)], xb)
    means = sums / counts.unsqueeze(1).to(torch.float64)
    tol = rtol if rtol is not None else max(c, d) * eps
    return _Moments(x, inv, counts, means, sums.sum(0) / x.shape[0], tol)


def _chunks(x: torch.Tensor):
    """Yield (start, float64 block) over the rows of x."""
    for lo in range(0, x.shape[0], _CHUNK):
        yield lo, x[lo : lo + _CHUNK].to(torch.float64)


def _within_sum(mo: _Moments, fn) -> torch.Tensor:
    """Σ over samples of w_i · fn(x_i − μ_c(i)) (fn maps a centred block to per-row values or matrices)."""
    w = _within_weights(mo)
    total = None
    for lo, xb in _chunks(mo.x):
        sl = slice(lo, lo + len(xb))
        part = fn(xb - mo.means[mo.inv[sl]], w[sl])
        total = part if total is None else total + part
    return total


def _projected_within(mo: _Moments, p: torch.Tensor) -> float:
    """Σ_i w_i ‖Pᵀ(x_i − μ_c(i))‖², projecting the samples first (an n × C product, no n × d centred copy)."""
    w = _within_weights(mo)
    means_p = mo.means @ p
    total = 0.0
    for lo, xb in _chunks(mo.x):
        sl = slice(lo, lo + len(xb))
        total += float((w[sl] * (xb @ p - means_p[mo.inv[sl]]).pow(2).sum(1)).sum())
    return total


def _between_pinv_factor(means: torch.Tensor, mu_g: torch.Tensor, rtol: float) -> tuple[torch.Tensor, int]:
    """P with Σ_B⁺ = C · P Pᵀ (P = M⁺, d × C, M the class means minus μ_G), and the rank kept."""
    m = means - mu_g
    s = torch.linalg.svdvals(m)
    if s.numel() == 0 or s[0] <= 0:
        return torch.zeros(m.shape[1], m.shape[0], dtype=torch.float64), 0
    # Eigenvalues of Σ_B are s²/C: a relative cut-off rtol on them is sqrt(rtol) on the singular values of M.
    rtol_m = rtol**0.5
    rank = int((s > rtol_m * s[0]).sum())
    return torch.linalg.pinv(m, rtol=rtol_m), rank


def _within_weights(mo: _Moments) -> torch.Tensor:
    """Per-sample weight 1/(C·n_c), so that Σ_i w_i v_i v_iᵀ is the unweighted class mean of covariances."""
    c = len(mo.counts)
    return 1.0 / (c * mo.counts.to(torch.float64)[mo.inv])


def _nc1_from(mo: _Moments, reference_centring: bool) -> tuple[float, int]:
    c = len(mo.counts)
    p, rank = _between_pinv_factor(mo.means, mo.mu_g, mo.rtol)
    if rank == 0:
        return float("inf"), 0
    # Tr(Σ_W Σ_B⁺) = C · Σ_i w_i ‖Pᵀ(x_i − μ_c)‖²
    tr = c * _projected_within(mo, p)
    if reference_centring:  # Σ_W gains μ_G μ_Gᵀ, so the trace gains μ_Gᵀ Σ_B⁺ μ_G
        tr += c * float((mo.mu_g @ p).pow(2).sum())
    return tr / c, rank


def nc1(x: torch.Tensor, y: torch.Tensor, reference_centring: bool = False, *, rtol: float | None = None) -> float:
    """NC1 = Tr(Σ_W Σ_B⁺)/C of features ``x`` (n × d) with labels ``y`` (n,); lower = more collapsed.

    Returns NaN with fewer than two classes and +inf when all class means coincide (Σ_B = 0), as the
    reference does. ``reference_centring=True`` reproduces the reference's μ_c − μ_G centring (spec §7.2).
    """
    mo = _prepare(x, y, rtol)
    if mo is None:
        return float("nan")
    return _nc1_from(mo, reference_centring)[0]


def nc1_both(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(textbook NC1, the reference's NC1) from one pass over the features (the runner's two columns)."""
    mo = _prepare(x, y, None)
    if mo is None:
        return float("nan"), float("nan")
    c = len(mo.counts)
    p, rank = _between_pinv_factor(mo.means, mo.mu_g, mo.rtol)
    if rank == 0:
        return float("inf"), float("inf")
    tr = c * _projected_within(mo, p)
    return tr / c, (tr + c * float((mo.mu_g @ p).pow(2).sum())) / c


#: Classes up to which :func:`class_scatter` is worth keeping: its scatter is K³ float64 values (16 MiB at 128).
MAX_SCATTER_CLASSES = 128


@dataclass(frozen=True)
class ClassScatter:
    """Per-class moments of a feature set that give the NC1 of any task made of whole classes without another pass
    over the rows: counts, float64 means, an orthonormal basis Q (d × r) of the span of the class means, and each
    class's scatter within that span, Σ_i z_i z_iᵀ with z_i = Qᵀ(x_i − μ_c) (r × r).

    This suffices because Σ_B⁺ = C · P Pᵀ with P = M⁺, whose columns lie in the span of the task's centred class
    means, inside span(Q): so ‖Pᵀv‖ = ‖(QᵀP)ᵀ Qᵀv‖ for every v, and Σ_{i∈c} ‖Pᵀ(x_i − μ_c)‖² = tr(Aᵀ Z_c A), A = QᵀP."""

    labels: list[int]
    counts: torch.Tensor  # (K,)
    means: torch.Tensor  # (K, d) float64
    basis: torch.Tensor  # (d, r) float64, r = min(K, d)
    scatter: torch.Tensor  # (K, r, r) float64
    eps: float  # machine epsilon of the rows' dtype (the rank cut-off, as in nc1)


def class_scatter(blocks: Sequence[torch.Tensor], labels: Sequence[int]) -> ClassScatter:
    """The :class:`ClassScatter` of classes ``labels`` from each one's rows (``blocks``, used as passed: the runner
    L2-normalises them first). One pass over the rows after their means."""
    if len(blocks) != len(labels) or not blocks or any(b.ndim != 2 or b.shape[0] == 0 for b in blocks):
        raise ValueError("class_scatter expects one non-empty (n_c, d) block of rows per label")
    eps = torch.finfo(blocks[0].dtype).eps if blocks[0].is_floating_point() else torch.finfo(torch.float64).eps
    blocks = [b.detach().to("cpu") for b in blocks]
    means = torch.stack([sum(xb.sum(0) for _, xb in _chunks(b)) / b.shape[0] for b in blocks])
    basis = torch.linalg.svd(means, full_matrices=False).Vh.T
    scatter = torch.zeros(len(blocks), basis.shape[1], basis.shape[1], dtype=torch.float64)
    for k, b in enumerate(blocks):
        for _, xb in _chunks(b):
            z = (xb - means[k]) @ basis
            scatter[k] += z.T @ z
    counts = torch.tensor([b.shape[0] for b in blocks])
    return ClassScatter([int(label) for label in labels], counts, means, basis, scatter, eps)


def nc1_of_classes(cs: ClassScatter, labels: Sequence[int]) -> tuple[float, float]:
    """(textbook NC1, the reference's NC1) of the task made of the whole classes ``labels``: what :func:`nc1_both`
    gives on their rows, from their :class:`ClassScatter` alone."""
    index = [cs.labels.index(int(label)) for label in labels]
    c, d = len(index), cs.means.shape[1]
    if c < 2:
        return float("nan"), float("nan")
    counts = cs.counts[index].to(torch.float64)
    means = cs.means[index]
    mu_g = (counts.unsqueeze(1) * means).sum(0) / counts.sum()
    p, rank = _between_pinv_factor(means, mu_g, max(c, d) * cs.eps)
    if rank == 0:
        return float("inf"), float("inf")
    a = cs.basis.T @ p
    within = float(((cs.scatter[index] * (a @ a.T)).sum((1, 2)) / (c * counts)).sum())
    return within, within + float((mu_g @ p).pow(2).sum())


def _covariances(mo: _Moments, reference_centring: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_W and Σ_B as d × d matrices (only needed for VCI)."""
    c = len(mo.counts)
    sw = _within_sum(mo, lambda v, w: (v * w.unsqueeze(1)).T @ v)
    if reference_centring:
        sw = sw + torch.outer(mo.mu_g, mo.mu_g)
    m = mo.means - mo.mu_g
    sb = m.T @ m / c
    return sw, sb


def _vci_from(mo: _Moments, reference_centring: bool, rank_b: int) -> float:
    if rank_b == 0:
        return float("inf")
    sw, sb = _covariances(mo, reference_centring)
    st = sw + sb
    st_pinv = torch.linalg.pinv(st, rtol=max(mo.rtol, st.shape[0] * torch.finfo(torch.float64).eps), hermitian=True)
    return 1.0 - float(torch.trace(sb @ st_pinv)) / rank_b


def vci(x: torch.Tensor, y: torch.Tensor, reference_centring: bool = False, *, rtol: float | None = None) -> float:
    """Variability Collapse Index (Xu & Liu 2023): 1 − Tr(Σ_B Σ_T⁺)/rank(Σ_B), Σ_T = Σ_W + Σ_B.

    Forms d × d matrices (O(n·d²)); NaN with fewer than two classes, +inf when Σ_B = 0 (as the reference).
    """
    mo = _prepare(x, y, rtol)
    if mo is None:
        return float("nan")
    return _vci_from(mo, reference_centring, _between_pinv_factor(mo.means, mo.mu_g, mo.rtol)[1])


def nc_stats(
    x: torch.Tensor,
    y: torch.Tensor,
    reference_centring: bool = False,
    *,
    rtol: float | None = None,
    with_vci: bool = True,
) -> NCStats:
    """NC1, VCI, Tr(Σ_W), Tr(Σ_B) and rank(Σ_B) in one pass (VCI skipped, NaN, if ``with_vci`` is False)."""
    mo = _prepare(x, y, rtol)
    if mo is None:
        nan = float("nan")
        labels = torch.as_tensor(y).reshape(-1)
        return NCStats(nan, nan, nan, nan, 0, int(torch.unique(labels[labels >= 0]).numel()))
    value, rank = _nc1_from(mo, reference_centring)
    intra = float(_within_sum(mo, lambda v, w: (w * v.pow(2).sum(1)).sum()))
    if reference_centring:
        intra += float(mo.mu_g.pow(2).sum())
    inter = float((mo.means - mo.mu_g).pow(2).sum(1).mean())
    v = _vci_from(mo, reference_centring, rank) if with_vci else float("nan")
    return NCStats(value, v, intra, inter, rank, len(mo.counts))
