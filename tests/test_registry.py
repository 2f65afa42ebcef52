"""The stage registries: every name resolves to one entry, a new GEN method is one registration, an external GEN
function runs through the CLI, a misspelt name lists the valid ones, and reference seeding matches sklearn."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from imprint_bench.errors import ConfigError
from imprint_bench.imprint.generate import generate_class_proxies
from imprint_bench.imprint.registry import AGG, DISTANCE, GEN, NORM, WEIGHTING, GenStage, config_text, stage_label
from imprint_bench.imprint.spec import GenSpec, MethodSpec
from imprint_bench.runner import run_job

ROOT = Path(__file__).resolve().parent.parent


def test_every_registered_stage_resolves_its_functions():
    for stage in GEN:
        assert callable(stage.function()), stage.name
    for norm in NORM:
        assert norm.positions and all(callable(f) for f in (
            *(norm.feature_fn() for _ in [0] if norm.features), *(norm.proxy_fn() for _ in [0] if norm.proxies)))
    for registry in (AGG, WEIGHTING):
        assert all(callable(s.function()) for s in registry)
    assert all(callable(s.function()) for s in DISTANCE if s.name != "inner_product")


def test_an_unknown_name_lists_the_registered_ones():
    with pytest.raises(ConfigError, match="unknown GEN method 'kmeanz' .*registered: all, mean, .*kls"):
        GenSpec("kmeanz", 3).validate()
    with pytest.raises(ConfigError, match="cannot be used as norm.pre; valid there: none, l2, cl2n"):
        MethodSpec(norm_pre="quantile").validate()
    with pytest.raises(ConfigError, match="unknown AGG distance 'cosin'"):
        MethodSpec.from_dict({"agg": {"name": "mnn", "m": 3, "distance": "cosin"}}).validate()


def test_a_seeded_method_never_shares_proxies_across_seeds_and_an_unseeded_one_gets_no_generator(mixture):
    xs = [mixture.x_train[mixture.y_train == c] for c in range(3)]
    spec = GenSpec("random", 2)
    assert not torch.equal(generate_class_proxies(xs, [0, 1, 2], spec, 1)[0],
                           generate_class_proxies(xs, [0, 1, 2], spec, 2)[0])

    def needs_no_generator(x, k, generator):
        assert generator is None
        return x[:1]

    GEN.register(GenStage("probe_unseeded", needs_no_generator, "probe"))
    try:
        assert generate_class_proxies(xs, [0, 1, 2], GenSpec("probe_unseeded", 2), 1)[0].shape == (1, 32)
    finally:
        GEN.unregister("probe_unseeded")


def test_a_built_in_gen_method_is_one_registration(compose_cfg, tmp_path):
    """A new method registered with its properties, label and colour runs through planning, the engine, the
    results and the report's labels without another edit (only its YAML, which gen.name= replaces here)."""

    def median_proxy(x: torch.Tensor, k: int, generator: None) -> torch.Tensor:
        return x.median(0, keepdim=True).values

    GEN.register(GenStage("median", median_proxy, "median", "#123456", "the class's coordinate-wise median",
                          fixed_k=1, no_auto_k="has exactly one proxy per class"))
    try:
        cfg = compose_cfg("dataset=synthetic", "dataset.n_classes=4", "dataset.dim=8", "gen.name=median",
                          "gen.k=5", f"paths.root={tmp_path}", "experiment_name=median", "nc1=false")
        summary = run_job(cfg)
        assert (summary.ok, summary.failed) == (1, 0)
        row = pd.read_parquet(next((tmp_path / "outputs/results/median/runs").glob("*/*.parquet"))).iloc[0]
        assert (row.gen, row.k, row.method) == ("median", 1, "custom")  # fixed k=1 from the entry
        assert row.acc > 50
        assert stage_label("gen", "median") == "median" and config_text(row) == "L2/median/L2/L2/max"
    finally:
        GEN.unregister("median")


def _cli(cwd: Path, tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "IMPRINT_BENCH_ROOT": str(tmp_path), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "imprint_bench", *overrides], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_an_external_gen_function_runs_through_the_cli(tmp_path):
    """A function in a file outside the package (the working directory): its dotted name and arguments are in the
    rows and the hash, so a second argument value is a second run; a broken one fails before any work."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "user_gen.py").write_text(textwrap.dedent("""
        import torch

        def first_rows(x, k, generator, n=1):
            return x[:n]

        def wrong_width(x, k, generator):
            return x[:, :2]
    """))
    base = ("dataset=synthetic", "dataset.n_classes=4", "dataset.dim=8", "gen=custom",
            "gen._target_=user_gen.first_rows", "experiment_name=byo", "nc1=false")
    first = _cli(work, tmp_path, *base, "+gen.n=3")
    assert first.returncode == 0, first.stderr
    second = _cli(work, tmp_path, *base, "+gen.n=5")
    assert second.returncode == 0, second.stderr
    rows = pd.read_parquet(tmp_path / "outputs/results/byo/results.parquet").sort_values("gen_args")
    assert list(rows.gen) == ["user_gen.first_rows"] * 2
    assert list(rows.gen_args) == ['{"n": 3}', '{"n": 5}'] and rows.run_hash.nunique() == 2
    assert list(rows.n_proxies) == [12, 20] and set(rows.status) == {"ok"}

    again = _cli(work, tmp_path, *base, "+gen.n=3")
    assert "0 ok, 0 failed, 1 skipped" in again.stdout + again.stderr

    bad = _cli(work, tmp_path, "dataset=synthetic", "gen=custom", "gen._target_=user_gen.wrong_width",
               "experiment_name=bad")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [  # tried on a made-up class of 8 rows × 4 features
        "error: GEN function user_gen.wrong_width must return a tensor [p, 4] (p ≥ 1 proxies of the class's "
        "4-dimensional rows); it returned (8, 2)"]
    assert not (tmp_path / "outputs/results/bad/runs").exists()


@pytest.mark.slow
def test_a_misspelt_stage_name_exits_2_with_the_valid_names(tmp_path):
    out = _cli(ROOT, tmp_path, "dataset=synthetic", "gen.name=kmeanz")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: unknown GEN method 'kmeanz' (gen.name); registered: all, mean, random, kmeans, kmedoids, fps, "
        "cov_max, none, ls, kls"]


def test_reference_seeding_reproduces_sklearn_kmeans_done_the_references_way(mixture):
    """Per class, KMeans(n_clusters=k, random_state=seed) on the class's L2-normalised float32 rows."""
    from sklearn.cluster import KMeans

    seed, k = 17121997, 4
    xs = [torch.nn.functional.normalize(mixture.x_train[mixture.y_train == c], dim=1) for c in range(3)]
    spec = GenSpec("kmeans", k, backend="sklearn", seeding="reference")
    spec.validate()
    ours = generate_class_proxies(xs, [0, 1, 2], spec, seed)
    for x, centres in zip(xs, ours, strict=True):
        expected = KMeans(n_clusters=k, random_state=seed).fit(x.numpy().astype(np.float32)).cluster_centers_
        np.testing.assert_allclose(centres.numpy(), expected, rtol=1e-6, atol=1e-6)
    derived = generate_class_proxies(xs, [0, 1, 2], GenSpec("kmeans", k, backend="sklearn"), seed)
    assert not all(torch.allclose(a, b) for a, b in zip(ours, derived, strict=True))
    with pytest.raises(ConfigError, match="needs gen.backend=sklearn"):
        GenSpec("kmeans", k, seeding="reference").validate()


def test_hashes_of_runs_without_the_new_gen_fields_are_unchanged():
    """seeding, target and args enter a run's identity only when set."""
    spec = MethodSpec(gen=GenSpec("kmeans", 20))
    assert spec.to_dict()["gen"] == {"name": "kmeans", "k": 20, "backend": "auto", "lam": None, "kmeans_iters": 300}
    ref = MethodSpec(gen=GenSpec("kmeans", 20, backend="sklearn", seeding="reference"))
    assert ref.to_dict()["gen"]["seeding"] == "reference"
    external = MethodSpec.from_dict({"gen": {"name": "custom", "_target_": "m.f", "k": 1, "n": [1, 2]}})
    assert external.gen.args == (("n", (1, 2)),) and external.to_dict()["gen"]["args"] == {"n": (1, 2)}


def test_the_readme_example_functions_pass_the_probe(monkeypatch):
    from imprint_bench.imprint.generate import probe_external_gen
    from imprint_bench.imprint.registry import _external

    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    for target, args in (("my_gen.first_rows", (("n", 3),)), ("my_gen.trimmed_mean", (("trim", 0.2),))):
        probe_external_gen(GenSpec("custom", 1, target=target, args=args))
        assert _external[target].external and _external[target].seeded
