"""Rank statistics over blocks (Demšar 2006), as in the paper's Sec. 3.3 but without the reference's bugs.

The input of the rank statistics is a *blocks × methods* matrix of scores (higher = better): one row per block/voter
(backbone × dataset × mapping × task), one column per method, each cell the median accuracy over seeds.

- :func:`average_ranks`: rank 1 = best within each block, ties share the mean rank, averaged over blocks.
- :func:`friedman`: ``scipy.stats.friedmanchisquare``; needs ≥ 3 methods and ≥ 2 blocks; never aborts.
- :func:`wilcoxon_holm`: pairwise ``scipy.stats.wilcoxon(zero_method="pratt")`` and Holm's step-down
  correction. Pairs with identical score vectors get p = 1 (the reference forced p = 0 and called them
  significant).
- :func:`cd_analysis`: all of the above, ready for the critical-difference diagram.
- :func:`nc_gain_fit`: Spearman ρ and a log-linear fit of the multi-proxy gain on NC1 (paper Fig. 12).
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

ALPHA = 0.05


def complete_blocks(matrix: pd.DataFrame) -> pd.DataFrame:
    """Keep only blocks (rows) with a score for every method, as the reference's voter intersection."""
    return matrix.dropna(axis=0, how="any")


def block_ranks(matrix: pd.DataFrame) -> pd.DataFrame:
    """Per-block ranks, 1 = highest score, ties averaged (pandas ``rank(method="average")``)."""
    return matrix.rank(axis=1, ascending=False, method="average")


def average_ranks(matrix: pd.DataFrame) -> pd.Series:
    """Mean over blocks of the per-block rank of each method (lower = better), sorted ascending."""
    m = complete_blocks(matrix)
    if m.empty:
        return pd.Series(np.nan, index=matrix.columns, dtype=float)
    return block_ranks(m).mean(axis=0).sort_values()


def wins(matrix: pd.DataFrame) -> pd.Series:
    """Number of blocks where each method has the (possibly shared) best score."""
    m = complete_blocks(matrix)
    return m.eq(m.max(axis=1), axis=0).sum(axis=0)


@dataclass(frozen=True)
class FriedmanResult:
    """Outcome of the Friedman test; ``pvalue`` is NaN when the test could not be run (see ``note``)."""

    statistic: float
    pvalue: float
    n_blocks: int
    n_methods: int
    alpha: float = ALPHA
    note: str = ""

    @property
    def significant(self) -> bool:
        return bool(np.isfinite(self.pvalue) and self.pvalue < self.alpha)


def friedman(matrix: pd.DataFrame, alpha: float = ALPHA) -> FriedmanResult:
    """Friedman χ² test across methods over the complete blocks; reports instead of raising."""
    m = complete_blocks(matrix)
    n, k = m.shape
    if k < 3:
        return FriedmanResult(np.nan, np.nan, n, k, alpha, "Friedman test needs at least 3 methods")
    if n < 2:
        return FriedmanResult(np.nan, np.nan, n, k, alpha, "Friedman test needs at least 2 blocks")
    values = m.to_numpy(dtype=float)
    if np.all(values == values[:, :1]):
        return FriedmanResult(0.0, 1.0, n, k, alpha, "all methods score identically in every block")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        from scipy import stats  # imported on use: collecting a sweep needs no scipy

        res = stats.friedmanchisquare(*values.T)
    p = float(res.pvalue)
    return FriedmanResult(float(res.statistic), p if np.isfinite(p) else 1.0, n, k, alpha)


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value (Pratt zeros); 1.0 when the vectors are identical."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = a - b
    if len(diff) == 0 or np.all(diff == 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from scipy import stats

        p = stats.wilcoxon(a, b, zero_method="pratt").pvalue
    return float(p) if np.isfinite(p) else 1.0


def holm(pvalues: np.ndarray | list[float], alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Holm step-down: adjusted p-values and rejections, in the input order.

    Sorted ascending, the i-th (0-based) of K p-values is rejected while p_(i) < α/(K − i); testing stops at
    the first non-rejection. The adjusted p-value is max_{j ≤ i} min(1, (K − j)·p_(j)), so
    ``reject == adj < α``.
    """
    p = np.asarray(pvalues, dtype=float)
    k = len(p)
    if k == 0:
        return p.copy(), np.zeros(0, dtype=bool)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (k - np.arange(k)) * p[order])
    adj_sorted = np.maximum.accumulate(scaled)
    adj = np.empty(k)
    adj[order] = adj_sorted
    return adj, adj < alpha


def wilcoxon_holm(matrix: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """All method pairs: raw Wilcoxon p, Holm-adjusted p, significance, mean difference and win counts."""
    m = complete_blocks(matrix)
    rows = []
    for a, b in itertools.combinations(m.columns, 2):
        va, vb = m[a].to_numpy(float), m[b].to_numpy(float)
        rows.append(
            {
                "method_a": a,
                "method_b": b,
                "n_blocks": len(va),
                "mean_diff": float(np.mean(va - vb)) if len(va) else np.nan,
                "a_wins": int((va > vb).sum()),
                "b_wins": int((vb > va).sum()),
                "ties": int((va == vb).sum()),
                "p_raw": wilcoxon_p(va, vb),
            }
        )
    pairs = pd.DataFrame(
        rows, columns=["method_a", "method_b", "n_blocks", "mean_diff", "a_wins", "b_wins", "ties", "p_raw"]
    )
    adj, rej = holm(pairs["p_raw"].to_numpy(), alpha)
    pairs["p_holm"] = adj
    pairs["significant"] = rej
    return pairs


def min_exact_wilcoxon_p(n_blocks: int) -> float:
    """Smallest two-sided exact Wilcoxon p-value achievable with n blocks (2 / 2ⁿ)."""
    return min(1.0, 2.0 ** (1 - n_blocks)) if n_blocks > 0 else 1.0


@dataclass
class CDResult:
    """Everything the critical-difference diagram and its table need."""

    methods: list[str]
    ranks: pd.Series  # average ranks (1 = best), ascending
    friedman: FriedmanResult
    pairs: pd.DataFrame  # wilcoxon_holm output
    n_blocks: int
    alpha: float = ALPHA
    notes: list[str] = field(default_factory=list)

    @property
    def posthoc_valid(self) -> bool:
        """Pairwise tests are interpreted only if Friedman rejected (or could not be run: 2 methods)."""
        return self.friedman.significant or (len(self.methods) == 2 and self.n_blocks >= 2)

    def significance(self) -> pd.DataFrame:
        """methods × methods booleans: True where the pair differs significantly (and post-hoc is valid)."""
        sig = pd.DataFrame(False, index=self.methods, columns=self.methods)
        if self.posthoc_valid:
            for row in self.pairs.itertuples(index=False):
                sig.loc[row.method_a, row.method_b] = sig.loc[row.method_b, row.method_a] = bool(row.significant)
        return sig


def cd_analysis(matrix: pd.DataFrame, alpha: float = ALPHA) -> CDResult:
    """Friedman test, Wilcoxon–Holm pairs and average ranks over the blocks complete for all methods."""
    m = complete_blocks(matrix)
    notes = []
    dropped = len(matrix) - len(m)
    if dropped:
        notes.append(f"{dropped} block(s) lacking a result for some method were left out.")
    fr = friedman(m, alpha)
    pairs = wilcoxon_holm(m, alpha)
    if len(m.columns) >= 3 and fr.note:
        notes.append(fr.note + ".")
    elif len(m.columns) >= 3 and not fr.significant:
        notes.append(
            f"Friedman test not significant (p = {fr.pvalue:.3g} ≥ {alpha}): no pair is called "
            "different, all methods are joined."
        )
    if len(m) > 0 and min_exact_wilcoxon_p(len(m)) >= alpha:
        notes.append(
            f"With only {len(m)} block(s) the exact Wilcoxon test cannot reach p < {alpha} (smallest possible "
            f"p = {min_exact_wilcoxon_p(len(m)):.3g}): more blocks are needed to call any pair different."
        )
    return CDResult(list(m.columns), average_ranks(m), fr, pairs, len(m), alpha, notes)


#: Up to this many points the Spearman p-value is exact (all n! orderings, 5,040 at n = 7); above it, scipy's
#: t approximation, which gives p = 0 for a perfect rank correlation however few the points.
EXACT_SPEARMAN_MAX_N = 7


def spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Spearman ρ and its two-sided p-value (exact permutation p for n ≤ :data:`EXACT_SPEARMAN_MAX_N`)."""
    from scipy import stats

    rho = float(stats.spearmanr(x, y).statistic)
    if len(x) <= EXACT_SPEARMAN_MAX_N:
        exact = stats.PermutationMethod(n_resamples=np.inf)
        return rho, float(stats.pearsonr(stats.rankdata(x), stats.rankdata(y), method=exact).pvalue)
    return rho, float(stats.spearmanr(x, y).pvalue)


def nc_gain_fit(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Spearman ρ (p) of NC1 ``x`` vs gain ``y`` and the linear fit of the gain on log10 NC1 (slope, R²)."""
    from scipy import stats

    keep = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y = x[keep], y[keep]
    out = {"n": len(x), "rho": np.nan, "p": np.nan, "slope": np.nan, "intercept": np.nan, "r2": np.nan}
    if len(x) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
        rho, p = spearman(x, y)
        fit = stats.linregress(np.log10(x), y)
        out.update(rho=rho, p=p, slope=float(fit.slope), intercept=float(fit.intercept), r2=float(fit.rvalue**2))
    return out
