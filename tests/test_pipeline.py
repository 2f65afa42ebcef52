"""Pipeline: multi-proxy beats the mean on multi-modal classes, caches are reused, heads round-trip."""

import pytest
import torch

from imprint_bench import ImprintedHead
from imprint_bench.data.tasks import make_task
from imprint_bench.imprint.pipeline import ProxyCache, Workspace
from imprint_bench.imprint.spec import PRESETS, AggSpec, GenSpec, MethodSpec


def test_kmeans_with_k_equal_modes_beats_mean(mixture):
    ws = Workspace(make_task(mixture, "all", None), seed=1)
    mean_acc = ws.evaluate(PRESETS["qi"])["acc"]
    kmeans_acc = ws.evaluate(MethodSpec("l2", GenSpec("kmeans", 4), "l2", "l2", AggSpec()))["acc"]
    assert kmeans_acc > 97.0 and kmeans_acc > mean_acc + 5.0


def test_every_preset_runs_and_the_oracle_is_strong(mixture):
    ws = Workspace(make_task(mixture, "even", [0, 2, 4, 6, 8]), seed=1, lam=1e-3)
    results = {name: ws.evaluate(spec.canonical()) for name, spec in PRESETS.items()}
    assert all(0 <= r["acc"] <= 100 for r in results.values())
    assert results["ours"]["n_proxies"] == 5 * 20
    assert results["qi"]["n_proxies"] == 5
    assert results["oracle"]["acc"] >= results["qi"]["acc"]


def test_proxies_are_reused_across_tasks_and_post_norms(mixture):
    cache = ProxyCache()
    spec = MethodSpec("l2", GenSpec("kmeans", 4), "l2", "l2", AggSpec())
    Workspace(make_task(mixture, "all", None), 1, proxy_cache=cache, feature_key="k").evaluate(spec)
    assert cache.misses == 10 and cache.hits == 0
    even = Workspace(make_task(mixture, "even", [0, 2, 4, 6, 8]), 1, proxy_cache=cache, feature_key="k")
    even.evaluate(spec)
    even.evaluate(MethodSpec("l2", GenSpec("kmeans", 4), "quantile", "l2", AggSpec()))
    assert cache.misses == 10 and cache.hits == 10  # the even classes' proxies came from the `all` task
    other_seed = Workspace(make_task(mixture, "even", [0, 2, 4, 6, 8]), 2, proxy_cache=cache, feature_key="k")
    other_seed.evaluate(spec)
    assert cache.misses == 15


def test_cached_and_uncached_evaluations_agree(mixture):
    task = make_task(mixture, "odd", [1, 3, 5, 7, 9])
    spec = MethodSpec("none", GenSpec("kmeans", 3), "l2", "l2", AggSpec("mnn", 3, "cosine", "distance"))
    shared = Workspace(task, 7)
    shared.evaluate(MethodSpec("none", GenSpec("kmeans", 3), "l2", "l2", AggSpec("mnn", 5, "cosine", "distance")))
    assert shared.evaluate(spec, m_needed=5)["acc"] == Workspace(task, 7).evaluate(spec)["acc"]


def test_head_fit_predict_save_load(tmp_path, mixture):
    head = ImprintedHead.fit(mixture.x_train, mixture.y_train, "ours", class_names=mixture.class_names, seed=3)
    pred = head.predict(mixture.x_test)
    assert (pred == mixture.y_test).float().mean() > 0.97
    path = head.save(tmp_path / "head.safetensors")
    loaded = ImprintedHead.load(path)
    assert torch.equal(loaded.predict(mixture.x_test), pred)
    assert loaded.class_names == mixture.class_names and loaded.method == head.method
    mnn = ImprintedHead.fit(mixture.x_train, mixture.y_train, "janson")
    assert torch.equal(ImprintedHead.load(mnn.save(tmp_path / "j.safetensors")).predict(mixture.x_test),
                       mnn.predict(mixture.x_test))


def test_head_attaches_to_a_backbone(mixture):
    backbone = torch.nn.Linear(32, 32)
    with torch.no_grad():
        feats = backbone(mixture.x_train)
    model = torch.nn.Sequential(backbone, ImprintedHead.fit(feats, mixture.y_train, "qi"))
    assert model(mixture.x_test[:4]).shape == (4, 10)


def test_load_rejects_foreign_files(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="not an imprint_bench head"):
        ImprintedHead.load(tmp_path / "x.safetensors")


def _proxies(mixture, spec, seed, shots=-1, **workspace_args):
    workspace = Workspace(make_task(mixture, "all", None, shots=shots, seed=seed), seed, **workspace_args)
    return ImprintedHead.from_workspace(workspace, spec).proxies


def test_few_shot_proxies_are_not_shared_across_seeds(mixture):
    cache = ProxyCache()
    for name in ("qi", "oracle"):
        spec = PRESETS[name]
        shared = [_proxies(mixture, spec, s, shots=3, proxy_cache=cache) for s in (1, 2)]
        fresh = _proxies(mixture, spec, 2, shots=3)
        assert torch.equal(shared[1], fresh)
        assert not torch.equal(shared[0], shared[1])
    kls = MethodSpec("none", GenSpec("kls", 2), "none", "none", AggSpec())
    _proxies(mixture, kls, 1, shots=4, proxy_cache=cache)
    shared = _proxies(mixture, kls, 2, shots=4, proxy_cache=cache)
    fresh = _proxies(mixture, kls, 2, shots=4)
    assert torch.allclose(shared, fresh)


def test_retain_drops_other_feature_sets(mixture):
    cache = ProxyCache()
    _proxies(mixture, PRESETS["qi"], 1, proxy_cache=cache, feature_key="a")
    _proxies(mixture, PRESETS["qi"], 1, proxy_cache=cache, feature_key="b")
    cache.retain("b")
    assert cache._items and all(k[0] == "b" for k in cache._items)


def test_fit_canonicalises_the_method(mixture):
    head = ImprintedHead.fit(mixture.x_train, mixture.y_train, MethodSpec(gen=GenSpec("mean", 500)))
    assert head.n_proxies == 10  # mean ignores k (a k above the class size must not mean "all samples")
