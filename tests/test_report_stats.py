"""Rank statistics of the report on small hand-made blocks × methods matrices with known outcomes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from imprint_bench.report import stats


def _matrix(data: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(data, index=pd.Index([f"b{i}" for i in range(len(next(iter(data.values()))))]))


def test_average_ranks_best_is_one_and_ties_are_averaged():
    mat = _matrix({"a": [90, 80, 70], "b": [85, 80, 75], "c": [10, 20, 30]})
    ranks = stats.average_ranks(mat)
    # block 0: a=1, b=2, c=3; block 1: a=b=1.5, c=3; block 2: b=1, a=2, c=3
    assert ranks["a"] == pytest.approx((1 + 1.5 + 2) / 3)
    assert ranks["b"] == pytest.approx((2 + 1.5 + 1) / 3)
    assert ranks["c"] == pytest.approx(3.0)
    assert list(ranks.index)[-1] == "c"
    assert stats.wins(mat).to_dict() == {"a": 2, "b": 2, "c": 0}


def test_incomplete_blocks_are_left_out():
    mat = _matrix({"a": [1.0, 2.0, np.nan], "b": [0.0, 1.0, 5.0]})
    assert len(stats.complete_blocks(mat)) == 2
    assert stats.average_ranks(mat)["a"] == 1.0


def test_identical_methods_are_never_significant():
    rng = np.random.default_rng(0)
    base = rng.uniform(60, 90, 30)
    mat = _matrix({"max": base, "1nn": base.copy(), "worse": base - rng.uniform(1, 3, 30)})
    assert stats.wilcoxon_p(base, base.copy()) == 1.0
    pairs = stats.wilcoxon_holm(mat).set_index(["method_a", "method_b"])
    same = pairs.loc[("max", "1nn")]
    assert same["p_raw"] == 1.0 and same["p_holm"] == 1.0 and not same["significant"]
    assert pairs.loc[("max", "worse"), "significant"] and pairs.loc[("1nn", "worse"), "significant"]
    cd = stats.cd_analysis(mat)
    assert not cd.significance().loc["max", "1nn"]
    assert cd.ranks["max"] == cd.ranks["1nn"] == pytest.approx(1.5)


def test_dominating_method_ranks_first_and_is_significant():
    rng = np.random.default_rng(1)
    n = 20
    b = rng.uniform(70, 90, n)
    mat = _matrix({"best": b + rng.uniform(2, 4, n), "mid": b, "low": b - rng.uniform(2, 4, n)})
    cd = stats.cd_analysis(mat)
    assert cd.friedman.significant and cd.posthoc_valid
    assert cd.ranks.index[0] == "best" and cd.ranks["best"] == 1.0
    sig = cd.significance()
    assert sig.loc["best", "mid"] and sig.loc["best", "low"] and sig.loc["mid", "low"]
    # 20 blocks, all the same sign: exact two-sided p = 2 / 2^20, times 3 pairs for Holm
    pairs = cd.pairs.set_index(["method_a", "method_b"])
    assert pairs.loc[("best", "mid"), "p_raw"] == pytest.approx(2 / 2**20)
    assert pairs.loc[("best", "mid"), "p_holm"] == pytest.approx(3 * 2 / 2**20)


def test_wilcoxon_matches_scipy_pratt():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, 25), rng.normal(0.3, 1, 25)
    b[:3] = a[:3]  # zero differences: Pratt keeps them in the ranking
    expected = sps.wilcoxon(a, b, zero_method="pratt").pvalue
    assert stats.wilcoxon_p(a, b) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("pvals", "adjusted", "reject"),
    [
        # sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 → max(0.06, 0.04) = 0.06
        ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02], [True, False, False, True]),
        # 0.001·3, 0.02·2 = 0.04, 0.021 → 0.04: every hypothesis rejected
        ([0.001, 0.02, 0.021], [0.003, 0.04, 0.04], [True, True, True]),
        # step-down stops at the first failure although 0.03 < α/1 for the last
        ([0.03, 0.03, 0.03], [0.09, 0.09, 0.09], [False, False, False]),
        ([0.5, 0.9], [1.0, 1.0], [False, False]),
    ],
)
def test_holm_step_down_on_known_p_values(pvals, adjusted, reject):
    adj, rej = stats.holm(pvals, alpha=0.05)
    np.testing.assert_allclose(adj, adjusted)
    assert list(rej) == reject


def test_holm_matches_the_reference_rule():
    """Reject the i-th smallest while p_(i) < α/(K − i); stop at the first failure."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        p = rng.uniform(0, 0.06, rng.integers(1, 8))
        order = np.argsort(p)
        expected = np.zeros(len(p), dtype=bool)
        for i, j in enumerate(order):
            if p[j] < 0.05 / (len(p) - i):
                expected[j] = True
            else:
                break
        assert list(stats.holm(p)[1]) == list(expected)


def test_non_significant_friedman_reports_instead_of_aborting():
    # Latin square: every method takes every rank equally often → Friedman statistic 0, p = 1
    mat = _matrix({"a": [3, 2, 1, 3, 2, 1], "b": [2, 1, 3, 2, 1, 3], "c": [1, 3, 2, 1, 3, 2]})
    cd = stats.cd_analysis(mat)
    assert cd.friedman.pvalue == pytest.approx(1.0) and not cd.friedman.significant
    assert not cd.posthoc_valid
    assert not cd.significance().to_numpy().any()
    assert any("not significant" in n for n in cd.notes)
    assert cd.ranks.to_numpy() == pytest.approx([2.0, 2.0, 2.0])


def test_all_identical_scores():
    mat = _matrix({"a": [50.0] * 8, "b": [50.0] * 8, "c": [50.0] * 8})
    cd = stats.cd_analysis(mat)
    assert cd.friedman.pvalue == 1.0 and not cd.significance().to_numpy().any()
    assert (cd.pairs["p_raw"] == 1.0).all()


def test_two_methods_skip_friedman_but_test_the_pair():
    rng = np.random.default_rng(4)
    b = rng.uniform(60, 80, 12)
    cd = stats.cd_analysis(_matrix({"x": b + 1, "y": b}))
    assert np.isnan(cd.friedman.pvalue) and "3 methods" in cd.friedman.note
    assert cd.posthoc_valid and cd.significance().loc["x", "y"]


def test_too_few_blocks_does_not_crash():
    cd = stats.cd_analysis(_matrix({"a": [1.0], "b": [0.5], "c": [0.2]}))
    assert cd.n_blocks == 1 and np.isnan(cd.friedman.pvalue)
    assert not cd.significance().to_numpy().any()
    few = stats.cd_analysis(_matrix({"a": [3.0, 2, 3, 4], "b": [1.0, 1, 1, 1], "c": [0.0, 0, 0, 0]}))
    assert any("cannot reach" in n for n in few.notes)  # 4 blocks: the smallest exact p is 0.125
