"""Method specs: validation messages, canonicalisation (the reference's pruning rules), hashing, presets."""

import pytest

from imprint_bench.errors import ConfigError
from imprint_bench.identity import stable_hash
from imprint_bench.imprint.registry import GEN
from imprint_bench.imprint.spec import (
    K_AUTO,
    PRESETS,
    UNUSED_BACKEND,
    AggSpec,
    GenSpec,
    MethodSpec,
    preset_name,
)

# stable_hash(...to_dict()) of two integer-k specs, computed before gen.k=auto existed
OURS_HASH = "14386015c7cf76ca82323bba56e0d5eb"
KMEANS_5_SHOTS_HASH = "489156b716016893a77d438752733c8d"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (MethodSpec(gen=GenSpec("kmeans", 0)), "gen.k must be a positive integer or -1"),
        (MethodSpec(gen=GenSpec("kmeans", -2)), "gen.k must be a positive integer or -1"),
        (MethodSpec(agg=AggSpec("mnn", 0, "euclidean")), "agg.m must be an integer >= 1"),
        (MethodSpec(agg=AggSpec("mnn", 3, "inner_product")), "agg=mnn needs a distance"),
        (MethodSpec(gen=GenSpec("kmeanz", 5)), "registered: all, mean, random, kmeans, kmedoids, fps, cov_max"),
        (MethodSpec(agg=AggSpec("mnn", 3, "euclidian")), "unknown AGG distance 'euclidian'"),
        (MethodSpec(norm_pre="l2", norm_inf="none"), "NORMpre='l2' requires NORMinf='l2'"),
        (MethodSpec(norm_post="cl2n"), "'cl2n' cannot be used as norm.post; valid there: none, l2, quantile"),
        (MethodSpec(gen=GenSpec("kmeans", 5, backend="cuml")), "unknown k-means backend"),
        (MethodSpec(gen=GenSpec("kmeans", "many")), "gen.k must be a positive integer or -1 .* or auto"),
        (MethodSpec(gen=GenSpec("mean", "auto")), "gen.k=auto .* gen.name kmeans or kmedoids; gen.name=mean has"),
        (MethodSpec(gen=GenSpec("fps", "auto")), "gen.name=fps has no fit criterion to choose k by"),
        (MethodSpec(gen=GenSpec("kls", "auto")), "gen.name=kls does not support it"),
    ],
)
def test_invalid_specs_fail_with_valid_choices(spec, message):
    with pytest.raises(ConfigError, match=message):
        spec.validate()


def test_canonical_applies_reference_rules():
    mean = MethodSpec(gen=GenSpec("mean", 20, backend="torch")).canonical()
    assert mean.gen == GenSpec("mean", 1, backend=UNUSED_BACKEND)  # k and backend are irrelevant for mean
    assert MethodSpec(gen=GenSpec("all", 5)).canonical().gen.k == -1
    assert MethodSpec(gen=GenSpec("kmeans", -1)).canonical().gen == GenSpec("all", -1, backend=UNUSED_BACKEND)
    assert MethodSpec(gen=GenSpec("kls", 1)).canonical().gen.name == "ls"
    max_euclid = MethodSpec(agg=AggSpec("max", -1, "euclidean", "distance")).canonical()
    assert max_euclid.agg == AggSpec("mnn", 1, "euclidean", "uniform")  # max + distance ≡ 1-NN
    assert MethodSpec(agg=AggSpec("mnn", 1, "cosine", "distance")).canonical().agg.weighting == "uniform"
    assert MethodSpec(gen=GenSpec("kmeans", 20)).canonical(shots=5).gen.k == 5  # few-shot: k := n
    assert MethodSpec(gen=GenSpec("kmeans", 3)).canonical(shots=5).gen.k == 3
    clipped = MethodSpec(gen=GenSpec("kls", 5)).canonical(shots=1).gen
    assert clipped == GenSpec("ls", 1, backend=UNUSED_BACKEND)  # clip first, then kls→ls


def test_hash_is_deterministic_and_sensitive():
    a = MethodSpec(gen=GenSpec("kmeans", 5)).to_dict()
    assert stable_hash(a) == stable_hash(MethodSpec(gen=GenSpec("kmeans", 5)).to_dict())
    assert stable_hash(a) != stable_hash(MethodSpec(gen=GenSpec("kmeans", 6)).to_dict())
    assert stable_hash({"b": 1, "a": 2}) == stable_hash({"a": 2, "b": 1})


def test_presets_match_table1_and_are_recognised():
    assert PRESETS["qi"].to_flat() | {"kmeans_iters": 0} == {
        "norm_pre": "l2", "gen": "mean", "gen_args": "", "k": 1, "norm_post": "l2", "norm_inf": "l2", "agg": "max",
        "m": -1, "distance": "inner_product", "weighting": "uniform", "kmeans_backend": "auto", "kmeans_iters": 0,
        "seeding": "derived", "lam": None, "batch_size": 0}
    assert PRESETS["hosoda"].norm_post == "quantile" and PRESETS["hosoda"].norm_pre == "none"
    assert PRESETS["janson"].agg == AggSpec("mnn", 1, "euclidean", "distance")
    assert PRESETS["ours"].gen == GenSpec("kmeans", 20)
    assert PRESETS["oracle"].gen.name == "ls"
    for name, spec in PRESETS.items():
        spec.validate()
        assert preset_name(spec) == name
    torch_ours = MethodSpec("l2", GenSpec("kmeans", 20, backend="torch"), "l2", "l2", AggSpec())
    assert preset_name(torch_ours) == "ours"
    assert preset_name(MethodSpec(gen=GenSpec("kmeans", 5))) == "custom"


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="unknown gen keys"):
        MethodSpec.from_dict({"gen": {"name": "mean", "kk": 3}})
    spec = MethodSpec.from_dict({"norm": {"pre": "none", "post": "l2", "inf": "l2"}, "gen": {"name": "fps", "k": 3}})
    assert spec.gen == GenSpec("fps", 3) and spec.norm_pre == "none"
    assert MethodSpec.from_dict(spec.to_dict()) == spec


def test_auto_k_is_valid_for_clustering_gen_only():
    for stage in GEN:
        name = stage.name
        spec = MethodSpec(gen=GenSpec(name, "auto"))
        if name in ("kmeans", "kmedoids"):
            spec.validate()
        else:
            with pytest.raises(ConfigError, match=f"gen.name={name} .*: give an integer k"):
                spec.validate()


def test_auto_k_canonical_flat_and_hash():
    auto = MethodSpec(gen=GenSpec("kmeans", "auto"))
    assert auto.canonical(shots=5).gen.k == "auto"  # the few-shot clip does not apply: the choice is bounded
    assert auto.canonical().gen == GenSpec("kmeans", "auto")
    assert MethodSpec(gen=GenSpec("kmedoids", "auto", backend="torch")).canonical().gen == GenSpec(
        "kmedoids", "auto", UNUSED_BACKEND)
    assert auto.to_flat()["k"] == K_AUTO == 0
    assert auto.to_dict()["gen"]["k"] == "auto" and MethodSpec.from_dict(auto.to_dict()) == auto
    auto_hash = stable_hash(auto.canonical().to_dict())
    assert all(auto_hash != stable_hash(MethodSpec(gen=GenSpec("kmeans", k)).canonical().to_dict())
               for k in (-1, 0, 1, 20))
    assert preset_name(auto) == "custom"


def test_integer_k_hashes_are_unchanged():
    """The run hashes of integer-k configurations (recorded before gen.k=auto existed) stay valid."""
    assert MethodSpec(gen=GenSpec("kmeans", 20)).to_dict()["gen"] == {
        "name": "kmeans", "k": 20, "backend": "auto", "lam": None, "kmeans_iters": 300}
    assert stable_hash(PRESETS["ours"].canonical().to_dict()) == OURS_HASH
    assert stable_hash(MethodSpec(gen=GenSpec("kmeans", 20)).canonical(shots=5).to_dict()) == KMEANS_5_SHOTS_HASH
