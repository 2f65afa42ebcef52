"""Synthetic Gaussian-mixture features: several modes per class (multi-modal classes, NC studies, tests)."""

from __future__ import annotations

import torch

from imprint_bench.data.base import FeatureSet
from imprint_bench.errors import ConfigError
from imprint_bench.identity import stable_hash


def make_mixture(
    n_classes: int = 10,
    modes: int = 4,
    dim: int = 64,
    n_train_per_class: int = 200,
    n_test_per_class: int = 100,
    spread: float = 3.0,
    noise: float = 1.0,
    seed: int = 0,
) -> FeatureSet:
    """Each class is an equal mixture of ``modes`` Gaussians (std ``noise``) with centres drawn from
    N(0, spread²·I); train and test rows are balanced and shuffled."""
    params = dict(
        n_classes=n_classes,
        modes=modes,
        dim=dim,
        n_train_per_class=n_train_per_class,
        n_test_per_class=n_test_per_class,
        spread=spread,
        noise=noise,
        seed=seed,
    )
    for name in ("n_classes", "modes", "dim", "n_train_per_class", "n_test_per_class"):
        if int(params[name]) < 1:
            raise ConfigError(f"synthetic dataset: {name} must be >= 1, got {params[name]}")
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn((n_classes, modes, dim), generator=g) * spread

    def draw(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n_classes).repeat_interleave(per_class)
        mode = torch.arange(per_class).remainder(modes).repeat(n_classes)
        x = centres[y, mode] + noise * torch.randn((y.numel(), dim), generator=g)
        perm = torch.randperm(y.numel(), generator=g)
        return x[perm], y[perm]

    x_train, y_train = draw(n_train_per_class)
    x_test, y_test = draw(n_test_per_class)
    names = [f"class_{i}" for i in range(n_classes)]
    return FeatureSet(
        x_train,
        y_train,
        x_test,
        y_test,
        names,
        key=f"synthetic-{stable_hash(params)[:16]}",
        source=f"synthetic mixture {params}",
    )
