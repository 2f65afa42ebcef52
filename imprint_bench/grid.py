"""Method grids: expand axes over the base configuration, canonicalise, prune and de-duplicate.

A grid is ``None`` (just the base configuration), a mapping of axes, or a list of such mappings
(their union). Axis keys are ``method`` (Table-1 preset names) and dotted stage fields:
``norm.pre norm.post norm.inf gen.name gen.k gen.backend gen.lam gen.kmeans_iters agg.name agg.m
agg.distance agg.weighting``. Example::

    grid:
      gen.name: [kmeans, kmedoids, mean]
      gen.k: [1, 5, 20]
      agg.name: [max]
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from imprint_bench.errors import ConfigError
from imprint_bench.imprint.spec import PRESETS, AggSpec, GenSpec, MethodSpec

AXES = {
    "norm.pre": ("norm_pre", None),
    "norm.post": ("norm_post", None),
    "norm.inf": ("norm_inf", None),
    **{f"gen.{f}": ("gen", f) for f in GenSpec.__dataclass_fields__},
    **{f"agg.{f}": ("agg", f) for f in AggSpec.__dataclass_fields__},
}


@dataclass
class GridPlan:
    """The unique canonical configurations of a grid, and what was pruned and why."""

    specs: list[MethodSpec] = field(default_factory=list)
    n_combinations: int = 0
    n_duplicates: int = 0
    pruned: dict[str, int] = field(default_factory=dict)


def _apply(base: MethodSpec, assignment: Mapping[str, Any]) -> MethodSpec:
    spec = PRESETS[assignment["method"]] if "method" in assignment else base
    gen, agg, top = dict(spec.gen.__dict__), dict(spec.agg.__dict__), {}
    for key, value in assignment.items():
        if key == "method":
            continue
        target, name = AXES[key]
        if target == "gen":
            gen[name] = value
        elif target == "agg":
            agg[name] = value
        else:
            top[target] = value
    return MethodSpec(top.get("norm_pre", spec.norm_pre), GenSpec(**gen), top.get("norm_post", spec.norm_post),
                      top.get("norm_inf", spec.norm_inf), AggSpec(**agg))


def _axis_dicts(grid: Any) -> list[dict[str, list]]:
    if grid is None:
        return [{}]
    blocks = [grid] if isinstance(grid, Mapping) else list(grid)
    out = []
    for block in blocks:
        if not isinstance(block, Mapping):
            raise ConfigError(f"grid entries must be mappings of axis -> list of values, got {block!r}")
        axes = {}
        for key, values in block.items():
            if key != "method" and key not in AXES:
                raise ConfigError(f"unknown grid axis {key!r}; valid axes: method, {', '.join(AXES)}")
            values = list(values) if isinstance(values, Sequence) and not isinstance(values, str) else [values]
            if key == "method":
                unknown = [v for v in values if v not in PRESETS]
                if unknown:
                    raise ConfigError(f"unknown method presets {unknown} in grid; valid: {', '.join(PRESETS)}")
            axes[key] = values
        out.append(axes)
    return out


def expand_grid(base: MethodSpec, grid: Any, shots: int = -1) -> GridPlan:
    """All unique valid canonical configurations of ``grid`` applied to ``base``.

    With no grid the base configuration must be valid (a ConfigError says why not); inside a grid,
    invalid combinations (e.g. NORMpre l2 with NORMinf none, mnn with inner_product) are pruned as
    the reference's filter does, and counted in ``GridPlan.pruned``.
    """
    plan = GridPlan()
    seen: set[MethodSpec] = set()
    for axes in _axis_dicts(grid):
        keys = list(axes)
        for values in itertools.product(*(axes[k] for k in keys)):
            plan.n_combinations += 1
            try:
                spec = _apply(base, dict(zip(keys, values, strict=True)))
                spec.validate()
            except (ConfigError, TypeError) as err:
                if grid is None:
                    raise
                reason = str(err).split(";")[0]
                plan.pruned[reason] = plan.pruned.get(reason, 0) + 1
                continue
            canon = spec.canonical(shots)
            if canon in seen:
                plan.n_duplicates += 1
                continue
            seen.add(canon)
            plan.specs.append(canon)
    return plan


def prune_for_task(specs: list[MethodSpec], n_classes: int) -> tuple[list[MethodSpec], int]:
    """Drop mNN configurations whose m exceeds the task's number of proxies (n_classes·k): m is clipped
    to that number, so they repeat the m = n_classes·k run (the reference's m > 10·k filter, fixed to
    use the task's class count and the k actually used)."""
    def degenerate(s: MethodSpec) -> bool:  # k=auto: the proxy count is known only after GEN, nothing is pruned
        return s.agg.name == "mnn" and isinstance(s.gen.k, int) and s.gen.k > 0 and s.agg.m > n_classes * s.gen.k

    kept = [s for s in specs if not degenerate(s)]
    return kept, len(specs) - len(kept)
