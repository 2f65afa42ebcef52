"""Streaming GEN (``gen.streaming=true``): proxies from batches of a class's rows with O(k·d) state."""

from __future__ import annotations

import pytest
import torch

from imprint_bench.errors import ConfigError
from imprint_bench.imprint.generate import generate_class_proxies, streaming_kmeans, streaming_mean
from imprint_bench.imprint.registry import gen_label
from imprint_bench.imprint.spec import GenSpec, MethodSpec


def stream(x: torch.Tensor, size: int):
    """Batches handed out one at a time (a generator: nothing is held beyond the batch)."""
    for start in range(0, x.shape[0], size):
        yield x[start:start + size]


def test_streaming_mean_is_the_mean():
    x = torch.randn(1000, 32, generator=torch.Generator().manual_seed(0)) + 5
    assert torch.allclose(streaming_mean(stream(x, 64), 1, None), x.mean(0, keepdim=True), atol=1e-5)


def test_streaming_kmeans_is_seeded_and_finds_the_modes():
    gen = torch.Generator().manual_seed(1)
    modes = torch.randn(4, 8, generator=gen) * 10
    x = modes[torch.arange(2000) % 4] + torch.randn(2000, 8, generator=gen) * 0.1
    a, b = streaming_kmeans(stream(x, 100), 4, 7), streaming_kmeans(stream(x, 100), 4, 7)
    assert a.shape == (4, 8) and torch.equal(a, b)
    assert torch.cdist(modes, a).min(1).values.max() < 0.5  # every mode has a centre near it


def test_streamed_specs_are_validated_hashed_apart_and_labelled():
    with pytest.raises(ConfigError, match="fps has no streaming form; these do: mean, kmeans"):
        GenSpec("fps", 5, streaming=True).validate()
    with pytest.raises(ConfigError, match="gen.batch_size must be an integer >= 1"):
        GenSpec("kmeans", 5, streaming=True, batch_size=0).validate()
    with pytest.raises(ConfigError, match="needs an integer gen.k"):
        GenSpec("kmeans", "auto", streaming=True).validate()
    plain = MethodSpec(gen=GenSpec("kmeans", 20)).canonical()
    assert "streaming" not in plain.gen.identity() and "batch_size" not in plain.gen.identity()  # old hashes stay
    assert MethodSpec(gen=GenSpec("kmeans", 20, batch_size=64)).canonical() == plain  # no streaming: size unused
    streamed = MethodSpec(gen=GenSpec("kmeans", 20, streaming=True, batch_size=64)).canonical()
    assert streamed.gen.identity()["batch_size"] == 64 and streamed.to_flat()["batch_size"] == 64
    assert gen_label("kmeans", 20, "", 64) == "k-means (k=20, streamed by 64)"
    assert not MethodSpec(gen=GenSpec("kmeans", -1, streaming=True)).canonical().gen.streaming  # all rows: no stream


def test_generate_streams_each_class_and_keeps_the_reference_rules():
    xs = [torch.randn(300, 6, generator=torch.Generator().manual_seed(i)) for i in range(3)] + [torch.randn(3, 6)]
    out = generate_class_proxies(xs, [0, 1, 2, 3], GenSpec("kmeans", 5, streaming=True, batch_size=50), seed=3)
    assert [tuple(o.shape) for o in out] == [(5, 6)] * 3 + [(3, 6)]  # a class under k keeps its rows
    means = generate_class_proxies(xs, [0, 1, 2, 3], GenSpec("mean", 1, streaming=True, batch_size=7), seed=3)
    assert all(torch.allclose(m, x.mean(0, keepdim=True), atol=1e-5) for m, x in zip(means, xs, strict=True))
