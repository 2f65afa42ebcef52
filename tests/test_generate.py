"""GEN: a hand-checked case for every method, k semantics, determinism and the LS closed form."""

import math

import pytest
import torch

from imprint_bench.imprint.cluster import (
    AUTO_K_LADDER,
    CRITERIA,
    candidate_ks,
    choose_k,
    inertia,
    kmeans,
    kmeans_auto,
    kmeans_ladder,
    kmedoids,
    kmedoids_auto,
)
from imprint_bench.imprint.generate import generate_class_proxies, generate_task_proxies, least_squares_weights
from imprint_bench.imprint.spec import GenSpec
from imprint_bench.rng import derive_seed

LINE = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [10.0, 0.0], [11.0, 0.0]])


def one(x, spec, seed=0, label=0):
    return generate_class_proxies([x], [label], spec, seed)[0]


def test_all_mean_and_small_classes():
    assert torch.equal(one(LINE, GenSpec("all", -1)), LINE)
    assert torch.allclose(one(LINE, GenSpec("mean", 1)), torch.tensor([[4.8, 0.0]]))
    assert torch.equal(one(LINE, GenSpec("kmeans", 10)), LINE)  # fewer samples than k: all samples
    assert torch.equal(one(LINE, GenSpec("kmeans", -1)), LINE)  # k = -1: all samples
    assert torch.equal(one(LINE[:1], GenSpec("fps", 1)), LINE[:1])  # a single sample


def test_random_is_a_seeded_subset_independent_of_order():
    x = torch.arange(40.0).reshape(20, 2)
    a = one(x, GenSpec("random", 5), seed=3, label=7)
    assert a.shape == (5, 2) and all(any(torch.equal(r, s) for s in x) for r in a)
    # same (seed, class) → same proxies, whatever ran before or which classes are generated together
    both = generate_class_proxies([x * 0 + 1, x], [1, 7], GenSpec("random", 5), 3)
    assert torch.equal(both[1], a)
    assert not torch.equal(one(x, GenSpec("random", 5), seed=4, label=7), a)


def test_fps_picks_farthest_points():
    proxies = one(LINE, GenSpec("fps", 3), seed=0)
    rows = {tuple(r.tolist()) for r in proxies}
    assert len(rows) == 3
    # after any start, the next pick is an extreme of the line and the third covers the other end
    assert (0.0, 0.0) in rows or (11.0, 0.0) in rows


def test_cov_max_equals_torch_cov_column_sums():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 8, generator=g)
    expected = x[torch.argsort(torch.cov(x).sum(0), descending=True)[:4]]
    assert torch.allclose(one(x, GenSpec("cov_max", 4)), expected)


def test_none_is_xavier_uniform():
    w = one(torch.zeros(50, 10), GenSpec("none", 4), seed=1)
    assert w.shape == (4, 10) and w.abs().max() <= math.sqrt(6 / 14) and w.std() > 0


def test_kmedoids_heuristic_alternate():
    medoids = kmedoids(LINE, 2)
    assert sorted(LINE[medoids][:, 0].tolist()) == [1.0, 10.0]
    assert torch.equal(one(LINE, GenSpec("kmedoids", 2)), LINE[medoids])


def blobs(n_per=150, k=6, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * 4
    return (centres.repeat_interleave(n_per, 0) + torch.randn(k * n_per, d, generator=g)), centres


@pytest.mark.parametrize("backend", ["faiss", "torch", "auto"])
def test_kmeans_backends_reach_sklearn_quality(backend):
    for seed in range(3):
        x, _ = blobs(seed=seed)
        ref = inertia(x, kmeans([x], 6, [seed], "sklearn")[0])
        got = inertia(x, kmeans([x], 6, [seed], backend)[0])
        assert got <= ref * 1.01, (backend, seed, got, ref)
    g = torch.Generator().manual_seed(5)
    noise = torch.randn(500, 32, generator=g)  # no cluster structure: local optima differ a little
    ref = inertia(noise, kmeans([noise], 10, [1], "sklearn")[0])
    assert inertia(noise, kmeans([noise], 10, [1], backend)[0]) <= ref * 1.01


def test_kmeans_deterministic_per_seed_and_batched_matches_single():
    x, _ = blobs()
    y, _ = blobs(seed=9)
    a = kmeans([x], 6, [11], "torch")[0]
    assert torch.equal(a, kmeans([x], 6, [11], "torch")[0])
    batched = kmeans([x, y[:500]], 6, [11, 12], "torch")
    assert torch.allclose(batched[0], a, atol=1e-4)
    assert torch.equal(kmeans([x], 6, [11], "faiss")[0], kmeans([x], 6, [11], "faiss")[0])


def test_auto_backend_sends_large_sets_to_faiss_and_batches_the_rest(monkeypatch):
    from imprint_bench.imprint import cluster

    calls = {"faiss": [], "torch": []}
    monkeypatch.setattr(cluster, "kmeans_faiss", lambda x, k, s, i: calls["faiss"].append(len(x)) or x[:k])
    monkeypatch.setattr(cluster, "kmeans_torch_batched",
                        lambda xs, k, s, i: calls["torch"].append([len(x) for x in xs]) or [x[:k] for x in xs])
    sizes = [cluster.FAISS_MIN_ROWS, 50, cluster.FAISS_MIN_ROWS + 7, 60]
    out = cluster.kmeans([torch.zeros(n, 4) for n in sizes], 3, [1, 2, 3, 4], "auto")
    assert calls == {"faiss": [sizes[0], sizes[2]], "torch": [[50, 60]]} and [len(c) for c in out] == [3] * 4


def test_least_squares_closed_form():
    g = torch.Generator().manual_seed(0)
    groups = [torch.randn(20, 5, generator=g) + i for i in range(3)]
    lam = 0.1
    x = torch.cat(groups).double()
    mu = x.mean(0)
    sigma_t = (x - mu).T @ (x - mu) / x.shape[0]
    means = torch.stack([gr.double().mean(0) for gr in groups], 1)
    expected = (means.T @ torch.inverse(sigma_t + torch.outer(mu, mu) + lam * torch.eye(5)) / 3).float()
    assert torch.allclose(least_squares_weights(groups, lam), expected, atol=1e-5)
    ls = generate_task_proxies(groups, [0, 1, 2], GenSpec("ls", 1), 0, lam)
    assert torch.allclose(torch.cat(ls), expected, atol=1e-5)
    kls1 = generate_task_proxies(groups, [0, 1, 2], GenSpec("kls", 1), 0, lam)
    assert torch.allclose(torch.cat(kls1), expected, atol=1e-5)  # kls with k=1 is ls


def test_kls_gives_k_rows_per_class_and_raw_samples_for_small_classes():
    x, _ = blobs(n_per=40, k=4, d=8)
    small = torch.randn(2, 8)
    out = generate_task_proxies([x, small], [0, 1], GenSpec("kls", 3), 0, 1e-3)
    assert out[0].shape == (3, 8)
    assert torch.equal(out[1], small)  # n < k: the raw samples, as the reference


def modes_mixture(modes, n=240, d=64, spread=2.0, seed=0):
    """A class of ``modes`` well-separated spherical Gaussian modes (std 1, centres from N(0, spread²·I))."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(modes, d, generator=g) * spread
    return centres[torch.arange(n) % modes] + torch.randn(n, d, generator=g)


MODES = (1, 3, 6)


@pytest.mark.parametrize("backend", ["torch", "faiss", "auto"])
def test_auto_k_recovers_the_number_of_modes(backend):
    if backend == "faiss":
        pytest.importorskip("faiss")
    xs = [modes_mixture(m, seed=i) for i, m in enumerate(MODES)]
    labels = [4, 7, 9]
    proxies = generate_class_proxies(xs, labels, GenSpec("kmeans", "auto", backend), seed=3)
    assert [abs(len(p) - m) <= 1 for p, m in zip(proxies, MODES, strict=True)] == [True] * 3, [len(p) for p in proxies]
    # the chosen k's centres themselves (no refit): the seeded fit of that k for that class
    for x, label, p in zip(xs, labels, proxies, strict=True):
        if len(p) > 1:
            fixed = kmeans([x], len(p), [derive_seed(3, "kmeans", label)], backend)[0]
            assert torch.allclose(p, fixed, atol=1e-4)


def test_every_criterion_recovers_well_separated_modes():
    xs = [modes_mixture(m, seed=i) for i, m in enumerate(MODES)]
    ladders = kmeans_ladder(xs, [1, 2, 3], "torch")
    for criterion in CRITERIA:
        chosen = [candidate_ks(len(x))[choose_k(x, c, criterion)] for x, c in zip(xs, ladders, strict=True)]
        assert all(abs(k - m) <= 1 for k, m in zip(chosen, MODES, strict=True)), (criterion, chosen)


def test_kmeans_ladder_and_auto_stay_below_the_row_count():
    assert candidate_ks(1) == [1] and candidate_ks(2) == [1] and candidate_ks(5) == [1, 2, 3, 4]
    assert candidate_ks(1000) == list(AUTO_K_LADDER)
    xs = [modes_mixture(3, n=n, d=8) for n in (5, 60)]
    ladders = kmeans_ladder(xs, [0, 1], "torch")
    assert [[len(c) for c in ladder] for ladder in ladders] == [[1, 2, 3, 4], candidate_ks(60)]
    assert torch.allclose(ladders[0][0], xs[0].mean(0, keepdim=True))  # k = 1: the mean
    assert all(len(c) < len(x) for c, x in zip(kmeans_auto(xs, [0, 1], "torch"), xs, strict=True))
    single = generate_class_proxies([LINE[:1]], [0], GenSpec("kmeans", "auto"), 0)[0]
    assert torch.equal(single, LINE[:1])  # one row: the row itself


def test_auto_k_is_seeded_per_class_and_independent_of_the_batch():
    xs = [modes_mixture(m, seed=i) for i, m in enumerate(MODES)]
    spec = GenSpec("kmeans", "auto", "torch")
    alone = generate_class_proxies(xs[1:2], [7], spec, seed=3)[0]
    together = generate_class_proxies(xs, [4, 7, 9], spec, seed=3)[1]
    assert alone.shape == together.shape and torch.allclose(alone, together, atol=1e-4)


def test_kmedoids_auto_picks_medoids_per_mode_count():
    x = modes_mixture(3, n=90, d=16, seed=2)
    medoids = kmedoids_auto(x)
    assert abs(len(medoids) - 3) <= 1 and torch.equal(kmedoids_auto(x), medoids)  # deterministic
    assert torch.equal(one(x, GenSpec("kmedoids", "auto")), x[medoids])


def test_unknown_criterion_is_rejected():
    from imprint_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown k criterion 'aic'; valid choices: bic, silhouette"):
        kmeans_auto([modes_mixture(1, n=20, d=4)], [0], "torch", criterion="aic")
