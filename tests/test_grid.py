"""Method grids: expansion, the reference's pruning rules, de-duplication, clear errors."""

import pytest

from imprint_bench.errors import ConfigError
from imprint_bench.grid import expand_grid, prune_for_task
from imprint_bench.imprint.spec import PRESETS, AggSpec, GenSpec, MethodSpec

BASE = MethodSpec()


def test_no_grid_is_the_base_and_invalid_base_raises():
    assert expand_grid(PRESETS["ours"], None).specs == [PRESETS["ours"].canonical()]
    with pytest.raises(ConfigError, match="requires NORMinf"):
        expand_grid(MethodSpec(norm_pre="l2", norm_inf="none"), None)


def test_presets_axis():
    plan = expand_grid(BASE, {"method": ["qi", "hosoda", "janson", "ours", "oracle"]})
    assert len(plan.specs) == 5


def test_aggfixed_norms_prune_to_nine_valid_triples():
    plan = expand_grid(BASE, {"norm.pre": ["none", "l2"], "norm.post": ["none", "l2", "quantile"],
                              "norm.inf": ["none", "l2"], "gen.name": ["kmeans"], "gen.k": [5]})
    assert len(plan.specs) == 9 and sum(plan.pruned.values()) == 3


def test_mean_and_all_collapse_over_k():
    plan = expand_grid(BASE, {"gen.name": ["mean", "all", "kmeans"], "gen.k": [-1, 1, 5, 20]})
    names = [(s.gen.name, s.gen.k) for s in plan.specs]
    assert names.count(("mean", 1)) == 1 and names.count(("all", -1)) == 1
    assert {("kmeans", 1), ("kmeans", 5), ("kmeans", 20)} <= set(names) and len(names) == 5
    assert plan.n_duplicates == 7  # mean ×3, all ×3, kmeans k=-1 (= all)


def test_aggfocus_agg_variants():
    plan = expand_grid(PRESETS["ours"], {
        "agg.name": ["max", "mnn"],
        "agg.distance": ["inner_product", "cosine", "euclidean", "manhattan", "mahalanobis"],
        "agg.weighting": ["uniform", "distance"],
        "agg.m": [1, 3, 5, 20, 50]})
    # max/IP, and per distance: m=1 (weighting irrelevant) + 4 m × 2 weightings
    assert len(plan.specs) == 1 + 4 * (1 + 4 * 2)
    assert AggSpec("mnn", 1, "euclidean", "uniform") in [s.agg for s in plan.specs]


def test_prune_for_task_drops_m_above_proxy_count():
    specs = [MethodSpec(gen=GenSpec("kmeans", 5), agg=AggSpec("mnn", m, "cosine")) for m in (3, 15, 20)]
    kept, dropped = prune_for_task(specs, 3)
    assert [s.agg.m for s in kept] == [3, 15] and dropped == 1


def test_grid_errors_list_valid_axes():
    with pytest.raises(ConfigError, match="unknown grid axis 'gen.kk'"):
        expand_grid(BASE, {"gen.kk": [1]})
    with pytest.raises(ConfigError, match="unknown method presets"):
        expand_grid(BASE, {"method": ["qii"]})
