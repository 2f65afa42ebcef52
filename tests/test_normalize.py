"""NORM stages: l2, cl2n, and quantile NORMpost with the reference's sequential semantics."""

import pytest
import torch

from imprint_bench.errors import ConfigError
from imprint_bench.imprint.normalize import (
    WeightedSortedValues,
    normalize_features,
    normalize_proxies,
    quantile_targets,
)


def test_l2_and_none_and_cl2n():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert torch.equal(normalize_features(x, "none"), x)
    assert torch.allclose(normalize_features(x, "l2"), torch.tensor([[0.6, 0.8], [0.0, 0.0]]))  # zero row stays 0
    centred = normalize_features(torch.tensor([[2.0, 1.0], [0.0, 1.0]]), "cl2n", torch.tensor([1.0, 1.0]))
    assert torch.allclose(centred, torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    with pytest.raises(ConfigError, match="unknown NORM kind 'zscore' .*registered: none, l2, cl2n, quantile"):
        normalize_features(x, "zscore")


def test_weighted_quantiles_equal_torch_quantile_on_expanded_values():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(37, generator=g)
    extra = torch.randn(8, generator=g)
    ref = WeightedSortedValues(torch.device("cpu"))
    ref.add(base)
    ref.add(extra, multiplicity=5)
    expanded = torch.cat([base, extra.repeat(5)])
    q = quantile_targets(8, torch.device("cpu"))
    assert torch.allclose(ref.quantiles(q), torch.quantile(expanded, q), atol=1e-6)


def reference_quantile_norm(blocks):
    """Brute-force reimplementation of the reference's sequential loop (spec §4.3)."""
    stored = []
    out = []
    for block in blocks:
        if not stored:
            mapped = block.clone()
        else:
            refv = torch.cat(stored).flatten()
            d = block.shape[1]
            q = torch.arange(0, 1, 1 / d, dtype=torch.float32)[:d] + 1 / (2 * d)
            y = torch.quantile(refv, q)
            mapped = block.clone()
            for r in range(block.shape[0]):
                mapped[r, torch.argsort(block[r], stable=True)] = y
        stored.append(mapped)
        out.append(mapped)
    return out


def test_quantile_matches_reference_semantics():
    g = torch.Generator().manual_seed(1)
    blocks = [torch.randn(3, 16, generator=g) * s for s in (1.0, 5.0, 0.1, 2.0)]
    ours = normalize_proxies(blocks, "quantile")
    expected = reference_quantile_norm(blocks)
    assert torch.equal(ours[0], blocks[0])  # the first class is left unchanged
    for a, b in zip(ours, expected, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    # every later row holds exactly the same multiset of values, in its own order
    assert torch.allclose(ours[2][0].sort().values, ours[2][1].sort().values)
    assert torch.equal(ours[1][0].argsort(), blocks[1][0].argsort())


def test_post_l2_and_none():
    blocks = [torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 2.0], [1.0, 0.0]])]
    assert normalize_proxies(blocks, "none")[1] is blocks[1]
    l2 = normalize_proxies(blocks, "l2")
    assert torch.allclose(l2[0], torch.tensor([[0.6, 0.8]])) and torch.allclose(l2[1].norm(dim=1), torch.ones(2))
