"""NC1 / VCI on hand-checkable examples and against a direct numpy implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from imprint_bench.imprint.nc import class_scatter, nc1, nc1_both, nc1_of_classes, nc_stats, vci


def _numpy_nc(x: np.ndarray, y: np.ndarray, quirk: bool) -> dict[str, float]:
    """Direct transcription of the formulas (spec §7.2): d × d matrices and numpy's pinv."""
    x = x.astype(np.float64)
    classes = np.unique(y)
    c = len(classes)
    mu_g = x.mean(0)
    sw = np.zeros((x.shape[1], x.shape[1]))
    sb = np.zeros_like(sw)
    for k in classes:
        xc = x[y == k]
        mu_c = xc.mean(0)
        v = xc - ((mu_c - mu_g) if quirk else mu_c)
        sw += v.T @ v / len(xc)
        sb += np.outer(mu_c - mu_g, mu_c - mu_g)
    sw, sb = sw / c, sb / c
    sb_pinv = np.linalg.pinv(sb, rcond=1e-10, hermitian=True)
    return {
        "nc1": float(np.trace(sw @ sb_pinv) / c),
        "vci": float(1 - np.trace(sb @ np.linalg.pinv(sw + sb, hermitian=True)) / np.linalg.matrix_rank(sb)),
        "intra": float(np.trace(sw)),
        "inter": float(np.trace(sb)),
    }


def _mixture(n_per_class: list[int], dim: int = 12, seed: int = 0, normalise: bool = True):
    g = torch.Generator().manual_seed(seed)
    means = 2.0 * torch.randn(len(n_per_class), dim, generator=g) + 1.0  # non-zero global mean
    y = torch.cat([torch.full((n,), i) for i, n in enumerate(n_per_class)])
    x = means[y] + 0.7 * torch.randn(len(y), dim, generator=g)
    return (torch.nn.functional.normalize(x, dim=1) if normalise else x), y


def test_hand_computed_two_classes_in_1d():
    # class 0 at -1 ± a, class 1 at +1 ± a: Σ_W = a², Σ_B = 1 → NC1 = a²/C = 0.125 for a = 0.5
    x = torch.tensor([[-1.5], [-0.5], [0.5], [1.5]])
    y = torch.tensor([0, 0, 1, 1])
    assert nc1(x, y) == pytest.approx(0.125)
    assert nc1(x, y, reference_centring=True) == pytest.approx(0.125)  # μ_G = 0: the quirk changes nothing
    # shifted by +3: textbook NC1 is translation invariant, the reference gains μ_Gᵀ Σ_B⁺ μ_G / C = 9/2
    assert nc1(x + 3, y) == pytest.approx(0.125)
    assert nc1(x + 3, y, reference_centring=True) == pytest.approx(0.125 + 4.5)


def test_perfectly_collapsed_classes_give_zero():
    x, y = _mixture([30, 30, 30], normalise=False)
    centres = torch.stack([x[y == k].mean(0) for k in range(3)])
    collapsed = torch.nn.functional.normalize(centres[y], dim=1)
    assert nc1(collapsed, y) == pytest.approx(0.0, abs=1e-12)
    st = nc_stats(collapsed, y)
    assert st.intra_trace == pytest.approx(0.0, abs=1e-12) and st.vci == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("quirk", [False, True])
@pytest.mark.parametrize("sizes", [[40, 40, 40, 40], [15, 60, 33]])
def test_matches_direct_numpy_implementation(quirk, sizes):
    x, y = _mixture(sizes, seed=len(sizes))
    ref = _numpy_nc(x.numpy(), y.numpy(), quirk)
    st = nc_stats(x, y, reference_centring=quirk)
    assert st.nc1 == pytest.approx(ref["nc1"], rel=1e-8)
    assert nc1(x, y, reference_centring=quirk) == pytest.approx(ref["nc1"], rel=1e-8)
    assert vci(x, y, reference_centring=quirk) == pytest.approx(ref["vci"], rel=1e-6)
    assert st.intra_trace == pytest.approx(ref["intra"], rel=1e-10)
    assert st.inter_trace == pytest.approx(ref["inter"], rel=1e-10)
    # Σ_c n_c (μ_c − μ_G) = 0, so Σ_B has rank C − 1 whatever the class sizes
    assert st.n_classes == len(sizes) and st.inter_rank == len(sizes) - 1


def test_reference_centring_identity_on_normalised_balanced_data():
    """Tr(Σ_W_ref) + Tr(Σ_B) = E‖x‖² = 1 for L2-normalised balanced classes (spec §7.2)."""
    x, y = _mixture([50] * 5, dim=20, seed=7, normalise=False)
    x = torch.nn.functional.normalize(x.double(), dim=1)
    ref = nc_stats(x, y, reference_centring=True, with_vci=False)
    assert ref.intra_trace + ref.inter_trace == pytest.approx(1.0, abs=1e-12)
    x32 = x.float()  # float32 features: the identity holds to float32 precision
    ref32 = nc_stats(x32, y, reference_centring=True, with_vci=False)
    assert ref32.intra_trace + ref32.inter_trace == pytest.approx(1.0, abs=1e-6)
    textbook = nc_stats(x, y, with_vci=False)
    assert textbook.intra_trace + textbook.inter_trace < 1.0  # misses ‖μ_G‖²
    mu_g = x.double().mean(0)
    assert ref.intra_trace - textbook.intra_trace == pytest.approx(float(mu_g @ mu_g), rel=1e-10)
    assert ref.nc1 > textbook.nc1


def test_label_values_order_dtype_and_unmapped_labels():
    x, y = _mixture([20, 25, 30], seed=3)
    base = nc1(x, y)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    assert nc1(x[perm], y[perm]) == pytest.approx(base, rel=1e-10)
    assert nc1(x, y * 7 + 3) == pytest.approx(base, rel=1e-10)
    assert nc1(x.double(), y) == pytest.approx(base, rel=1e-6)
    # the reference drops label -1 (unmapped samples)
    x_extra = torch.cat([x, torch.randn(10, x.shape[1])])
    y_extra = torch.cat([y, torch.full((10,), -1)])
    assert nc1(x_extra, y_extra) == pytest.approx(base, rel=1e-10)


def test_degenerate_inputs():
    x, y = _mixture([10, 10], seed=5)
    assert math.isnan(nc1(x, torch.zeros_like(y)))  # one class: undefined
    same = torch.ones(6, 4)
    assert nc1(same, torch.tensor([0, 0, 0, 1, 1, 1])) == math.inf  # identical class means: Σ_B = 0
    with pytest.raises(ValueError, match="shape"):
        nc1(x, y[:-1])


def test_large_input_is_fast_enough():
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(6000, 256, generator=g), dim=1)
    y = torch.randint(0, 10, (6000,), generator=g)
    assert np.isfinite(nc1(x, y)) and np.isfinite(nc1(x, y, reference_centring=True))


@pytest.mark.parametrize("dim", [12, 4])  # 4 < 6 classes: the class means span every direction
def test_nc1_of_whole_classes_from_their_moments_equals_the_nc1_of_their_rows(dim):
    sizes = [40, 25, 60, 33, 50, 18]
    x, y = _mixture(sizes, dim=dim, seed=3)
    scatter = class_scatter([x[y == k] for k in range(len(sizes))], list(range(len(sizes))))
    for labels in ([0, 1, 2, 3, 4, 5], [0, 2, 4], [5, 1], [3, 4, 0, 1]):
        keep = torch.isin(y, torch.tensor(labels))
        rows, renumbered = x[keep], torch.tensor([labels.index(int(v)) for v in y[keep]])
        expected = nc1_both(rows, renumbered)
        assert nc1_of_classes(scatter, labels) == pytest.approx(expected, rel=1e-10)
        assert expected[0] == pytest.approx(_numpy_nc(rows.numpy(), renumbered.numpy(), False)["nc1"], rel=1e-8)
    assert all(math.isnan(v) for v in nc1_of_classes(scatter, [2]))
    collapsed = class_scatter([torch.ones(3, dim), torch.ones(4, dim)], [0, 1])  # identical class means
    assert nc1_of_classes(collapsed, [0, 1]) == (math.inf, math.inf)


def test_the_runner_reads_whole_class_tasks_off_the_class_moments_and_computes_the_others_from_rows():
    from imprint_bench.data.synthetic import make_mixture
    from imprint_bench.data.tasks import make_task
    from imprint_bench.evaluate import NC1_MEMO, SCATTER_MEMO, _nc1_columns, _whole_classes

    features = make_mixture(n_classes=5, dim=16, n_train_per_class=30, n_test_per_class=5, seed=1)
    features.key = "test-nc1-moments"
    for classes, shots in ((None, -1), ([0, 3, 4], -1), ([1, 2], 4)):
        task = make_task(features, "t", classes, shots, seed=7)
        x, y = task.train_xy()
        expected = nc1_both(torch.nn.functional.normalize(x, dim=1), y)
        got = _nc1_columns(task, features, seed=7)
        assert (got["nc1"], got["nc1_ref"]) == pytest.approx(expected, rel=1e-10)
        assert _whole_classes(task, features) == (shots < 0)  # a few-shot sample is not its classes' rows
    assert list(SCATTER_MEMO) == [features.key]
    NC1_MEMO.clear()
    SCATTER_MEMO.clear()
