"""The stage registries: every GEN method, NORM kind, AGG rule, distance and weighting, in one place each.

An entry holds a stage's name, its function, what it declares about itself (seeded or not, per class or solved
jointly, which options it takes) and how the report shows it (label, colour). Everything that needs to know a
stage reads its entry: validation and canonical hashing (``spec.py``), the engine (``generate.py``,
``pipeline.py``), the grid, the report and the trackers. An unknown name is a ConfigError that lists the
registered names; nothing falls through to a default.

Functions are given as callables or as ``"module:attribute"`` strings imported on first use, so that this module,
and with it planning and ``--help``, imports no torch. A new built-in stage is one function, one ``register``
call below, one YAML file under ``conf/`` and one test (``docs/architecture.md``, "Adding a stage"); an external
GEN function is plugged in with ``gen=custom gen._target_=module.function`` (:func:`external_gen`).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from imprint_bench.errors import ConfigError

#: Colours for stages that do not declare one (external functions), in order of first use.
FALLBACK_COLORS = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#5254a3", "#8ca252", "#bd9e39")


@dataclass(frozen=True)
class Stage:
    """What every registered stage has: a name, a function (a callable or ``"module:attribute"``), a display
    label and colour for the report, and one line saying what it does."""

    name: str
    fn: Callable[..., Any] | str
    label: str
    color: str = "#7f7f7f"
    doc: str = ""

    def function(self) -> Callable[..., Any]:
        """The stage's callable (a ``"module:attribute"`` string is imported on first use)."""
        return resolve_function(self.fn)


@dataclass(frozen=True)
class GenStage(Stage):
    """A GEN method.

    - ``scope="class"``: ``fn(x, k, generator)`` is called once per class with its rows ``x`` [n, d] (after
      NORMpre), ``gen.k`` and the class's seeded ``torch.Generator`` (``None`` unless ``seeded``), and returns
      that class's proxies [p, d]. With ``batched``, ``fn(xs, spec, seeds)`` gets every class that needs it at
      once (k-means) and returns one proxy block per class.
    - ``scope="task"``: solved jointly over the task's classes, ``fn(xs, labels, spec, seed, lam, grams)``
      returns one block per class (least squares).
    - ``fixed_k``: the only k the method has (mean and ls: 1; all: -1); ``None`` when ``gen.k`` chooses.
    - ``reference_rules``: the reference's shortcuts apply first: k = -1 or a class with fewer rows than k keeps
      every row, and a one-row class is its own proxy (unless ``uses_rows`` is false: random-init weights).
    - ``no_auto_k``: why ``gen.k=auto`` is not valid (empty: it is).
    - ``lam``: takes the ridge λ. ``kmeans``: ``gen.backend``, ``gen.kmeans_iters`` and ``gen.seeding`` apply.
    - ``k1_is``: the method this one equals at k = 1 (kls with k = 1 is ls).
    - ``streaming``: ``fn(batches, k, seed)`` makes a class's proxies from an iterator of row batches with O(k·d)
      state (``gen.streaming=true gen.batch_size=N``: mean, mini-batch k-means).
    - ``incremental``: how a saved head takes new classes: ``per_class`` (new classes' proxies only) or
      ``statistics`` (all proxies re-solved from the sufficient statistics the head keeps: ls, kls).
    """

    scope: Literal["class", "task"] = "class"
    seeded: bool = False
    batched: bool = False
    fixed_k: int | None = None
    reference_rules: bool = True
    uses_rows: bool = True
    no_auto_k: str = "has no fit criterion to choose k by"
    lam: bool = False
    kmeans: bool = False
    k1_is: str | None = None
    external: bool = False
    #: ``fn(batches, k, seed)``: the proxies from an iterator of row batches, holding O(k·d) state
    #: (``gen.streaming=true``); None: no streaming form
    streaming: Callable[..., Any] | str | None = None
    #: how a saved head takes new classes (``imprint-bench-extend``): ``per_class``: the new classes' proxies
    #: alone, the others untouched; ``statistics``: every proxy re-solved from statistics kept in the head
    incremental: Literal["per_class", "statistics"] = "per_class"

    @property
    def auto_k(self) -> bool:
        return not self.no_auto_k


@dataclass(frozen=True)
class NormStage(Stage):
    """A NORM kind. ``features(x, center)`` normalises feature rows (NORMpre, NORMinf; ``center`` is the task's
    train mean); ``proxies(blocks)`` normalises the per-class proxy blocks in task order (NORMpost). A kind
    offers the positions it has a function for. ``task_scoped``: its result depends on the task's classes (cl2n: the
    centre is their train mean; a head that takes new classes moves it). ``proxies_after``: how new classes' blocks
    are normalised after the existing ones (quantile); None: on their own."""

    features: Callable[..., Any] | str | None = None
    proxies: Callable[..., Any] | str | None = None
    task_scoped: bool = False
    #: NORMpost of blocks that come after already normalised ones, ``fn(blocks, earlier)`` (a kind whose blocks
    #: depend on the earlier classes); None: each block on its own
    proxies_after: Callable[..., Any] | str | None = None

    @property
    def positions(self) -> tuple[str, ...]:
        return (("pre", "inf") if self.features else ()) + (("post",) if self.proxies else ())

    def feature_fn(self) -> Callable[..., Any]:
        return resolve_function(self.features)

    def proxy_fn(self) -> Callable[..., Any]:
        return resolve_function(self.proxies)

    def proxies_after_fn(self) -> Callable[..., Any]:
        return resolve_function(self.proxies_after)


@dataclass(frozen=True)
class AggStage(Stage):
    """An AGG rule. ``neighbours``: it votes over the m nearest proxies under ``agg.distance`` (``fn(dist, idx,
    owner, n_classes, m, weighting)``); otherwise ``fn(x, proxies, owner, n_classes)`` scores by inner product."""

    neighbours: bool = False


@dataclass(frozen=True)
class DistanceStage(Stage):
    """An m-NN distance: ``fn(x, proxies)`` → [N, P]. ``prepare(proxies)`` → a matrix both sides are multiplied
    by first (Mahalanobis whitening), or None."""

    prepare: Callable[..., Any] | str | None = None


@dataclass(frozen=True)
class WeightingStage(Stage):
    """An m-NN vote weighting: ``fn(dist)`` → the weight of each neighbour's vote."""


E = TypeVar("E", bound=Stage)


class Registry(Generic[E]):
    """Named stages of one kind, in registration order (``option`` names the config key, for messages)."""

    def __init__(self, what: str, option: str) -> None:
        self.what = what
        self.option = option
        self._entries: dict[str, E] = {}

    def register(self, entry: E, *, replace: bool = False) -> E:
        """Add ``entry``; a name registered twice is an error unless ``replace``."""
        if entry.name in self._entries and not replace:
            raise ValueError(f"{self.what} {entry.name!r} is already registered")
        self._entries[entry.name] = entry
        return entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def get(self, name: Any) -> E:
        """The entry named ``name``; ConfigError listing the registered names otherwise."""
        entry = self._entries.get(name) if isinstance(name, str) else None
        if entry is None:
            raise ConfigError(f"unknown {self.what} {name!r} ({self.option}); registered: {', '.join(self._entries)}")
        return entry

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[E]:
        return iter(self._entries.values())


def resolve_function(fn: Callable[..., Any] | str | None) -> Callable[..., Any]:
    """A callable, or the one a ``"module:attribute"`` string names."""
    if not fn:
        raise ValueError("this stage has no function for that position")
    return fn if callable(fn) else import_target(fn.replace(":", "."))


def import_target(target: str) -> Callable[..., Any]:
    """The callable named by a dotted path ``package.module.function`` (Hydra's ``_target_`` convention), looked
    up on ``sys.path`` and in the working directory; ConfigError when it does not import."""
    module_name, _, attr = str(target).rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"_target_ must be a dotted path module.function, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # ImportError, or an error raised by the module itself
        raise ConfigError(f"_target_={target}: module {module_name!r} does not import ({type(err).__name__}: "
                          f"{err}); put it on PYTHONPATH or in the working directory") from err
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"_target_={target}: {module_name!r} has no function {attr!r}")
    return fn


GEN: Registry[GenStage] = Registry("GEN method", "gen.name")
NORM: Registry[NormStage] = Registry("NORM kind", "norm.pre/post/inf")
AGG: Registry[AggStage] = Registry("AGG rule", "agg.name")
DISTANCE: Registry[DistanceStage] = Registry("AGG distance", "agg.distance")
WEIGHTING: Registry[WeightingStage] = Registry("m-NN weighting", "agg.weighting")

#: ``gen.name`` of an external GEN function (``gen=custom gen._target_=module.function``).
CUSTOM_GEN = "custom"


def norm_names(position: str) -> tuple[str, ...]:
    """The NORM kinds valid at ``position`` (pre, post or inf)."""
    return tuple(n.name for n in NORM if position in n.positions)


def check_norm(position: str, name: Any) -> NormStage:
    """The NORM kind ``name`` at ``position``, or a ConfigError listing the valid ones there."""
    entry = NORM.get(name)
    if position not in entry.positions:
        raise ConfigError(f"NORM kind {name!r} cannot be used as norm.{position}; valid there: "
                          f"{', '.join(norm_names(position))}")
    return entry


_external: dict[str, GenStage] = {}


def external_gen(target: str) -> GenStage:
    """The GEN stage of an external per-class function (imported, signature checked): called as
    ``fn(x, k, generator, **gen_arguments)``, seeded (it gets the class's generator), per class, shown under
    its dotted name."""
    if target not in _external:
        fn = import_target(target)
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = {}
        positional = [p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if params and len(positional) < 3 and not any(p.kind == p.VAR_POSITIONAL for p in params.values()):
            raise ConfigError(f"_target_={target}: a GEN function is called as fn(x, k, generator, **arguments); "
                              f"{target} takes ({', '.join(params)})")
        color = FALLBACK_COLORS[len(_external) % len(FALLBACK_COLORS)]
        _external[target] = GenStage(target, fn, target, color, doc=f"external: {target}", seeded=True,
                                     reference_rules=False, external=True)
    return _external[target]


def gen_stage(name: str, target: str | None = None) -> GenStage:
    """The GEN stage of ``gen.name`` (with ``gen._target_`` for ``custom``)."""
    if target:
        if name != CUSTOM_GEN:
            raise ConfigError(f"gen._target_ is for external functions and needs gen.name={CUSTOM_GEN} (gen=custom); "
                              f"got gen.name={name}")
        return external_gen(target)
    if name == CUSTOM_GEN:
        raise ConfigError("gen=custom needs gen._target_=module.function (a function fn(x, k, generator, **args) "
                          "that returns a class's proxies)")
    return GEN.get(name)


def stage_label(column: str, value: Any) -> str:
    """The display label of a stage value in a results column (``gen``, ``norm_*``, ``agg``, ``distance``,
    ``weighting``); an unregistered value shows as it is."""
    registry = {"gen": GEN, "norm_pre": NORM, "norm_post": NORM, "norm_inf": NORM, "agg": AGG,
                "distance": DISTANCE, "weighting": WEIGHTING}.get(column)
    if registry is not None and value in registry:
        return registry.get(value).label
    return str(value)


def stage_color(column: str, value: Any) -> str:
    """The colour of a GEN method (or other stage) in figures: its entry's, else a stable fallback."""
    registry = {"gen": GEN, "agg": AGG, "distance": DISTANCE}.get(column)
    if registry is not None and value in registry:
        return registry.get(value).color
    return FALLBACK_COLORS[sum(map(ord, str(value))) % len(FALLBACK_COLORS)]


def k_text(k: int) -> str:
    """k as shown: ``all`` for −1 (every sample), ``auto`` for 0 (``gen.k=auto``: chosen per class), else the number."""
    return {-1: "all", 0: "auto"}.get(int(k), str(int(k)))


def gen_label(gen: str, k: int, args: str = "", batch_size: int = 0) -> str:
    """E.g. ``mean``, ``all``, ``k-means (k=20)``, ``k-means (k=auto)``, ``my.fn[n=3] (k=1)``, ``k-means (k=20,
    streamed by 256)``."""
    name = stage_label("gen", gen)
    if args:
        name += "[" + ", ".join(f"{key}={value}" for key, value in json.loads(args).items()) + "]"
    streamed = f"streamed by {batch_size}" if batch_size > 0 else ""
    if gen in GEN and GEN.get(gen).fixed_k is not None:
        return f"{name} ({streamed})" if streamed else name
    return f"{name} (k={k_text(k)}{', ' + streamed if streamed else ''})"


def agg_label(agg: str, m: int, distance: str, weighting: str) -> str:
    """E.g. ``max``, ``1-NN (euclidean)``, ``5-NN (cosine, distance-weighted)``."""
    if agg in AGG and not AGG.get(agg).neighbours:
        return agg if distance in ("inner_product", "") else f"1-NN ({distance})"
    w = ", distance-weighted" if weighting == "distance" and m != 1 else ""
    return f"{m}-NN ({distance}{w})"


def config_text(row: Mapping[str, Any]) -> str:
    """The one text of a configuration, from its result columns: ``L2/k-means(k=5)/L2/L2/max`` (+ ``λ=…`` for
    methods that take one, ``@n=10`` for few-shot)."""
    gen = gen_label(row["gen"], int(row["k"]), str(row.get("gen_args") or ""),
                    int(row.get("batch_size") or 0)).replace(" (", "(")
    agg = agg_label(row["agg"], int(row["m"]), row["distance"], row["weighting"])
    norms = [stage_label("norm_pre", row[c]) for c in ("norm_pre", "norm_post", "norm_inf")]
    text = f"{norms[0]}/{gen}/{norms[1]}/{norms[2]}/{agg}"
    lam = row.get("lam")
    if row["gen"] in GEN and GEN.get(row["gen"]).lam and lam is not None and lam == lam and lam >= 0:
        text += f" λ={lam:.3g}"
    shots = int(row.get("shots", -1))
    return text + (f"@n={shots}" if shots > 0 else "")


# ------------------------------------------------------------------------------------------------ built-ins
_G = "imprint_bench.imprint.generate:"
_N = "imprint_bench.imprint.normalize:"
_A = "imprint_bench.imprint.aggregate:"

GEN.register(GenStage("all", _G + "all_rows", "all", "#7f7f7f", "every training row is a proxy",
                      fixed_k=-1, no_auto_k="keeps every sample"))
GEN.register(GenStage("mean", _G + "mean_proxy", "mean", "#e377c2", "the class mean (Qi et al.)",
                      fixed_k=1, no_auto_k="has exactly one proxy per class", streaming=_G + "streaming_mean"))
GEN.register(GenStage("random", _G + "random_proxies", "k-random", "#2ca02c", "k rows drawn at random",
                      seeded=True))
GEN.register(GenStage("kmeans", _G + "kmeans_proxies", "k-means", "#1f77b4", "k-means centroids (IMPRINT's ours)",
                      seeded=True, batched=True, no_auto_k="", kmeans=True, streaming=_G + "streaming_kmeans"))
GEN.register(GenStage("kmedoids", _G + "kmedoids_proxies", "k-medoids", "#ff7f0e",
                      "k-medoids (alternate, heuristic init: deterministic)", no_auto_k=""))
GEN.register(GenStage("fps", _G + "farthest_point_proxies", "k-fps", "#d62728",
                      "farthest point sampling from a random start", seeded=True))
GEN.register(GenStage("cov_max", _G + "cov_max_proxies", "k-cov-max", "#9467bd",
                      "the k rows with the largest covariance column sums"))
GEN.register(GenStage("none", _G + "xavier_proxies", "random init", "#bcbd22",
                      "untrained Xavier-uniform weights (a baseline)", seeded=True, uses_rows=False))
GEN.register(GenStage("ls", _G + "joint_least_squares", "least squares", "#17becf",
                      "ridge least squares over the task's classes (the oracle)", scope="task", fixed_k=1,
                      no_auto_k="has exactly one proxy per class", lam=True, incremental="statistics"))
GEN.register(GenStage("kls", _G + "joint_least_squares", "k-LS", "#8c564b",
                      "least squares over k k-means pseudo-classes per class", scope="task", seeded=True,
                      no_auto_k="does not support it (its k-means pseudo-classes are solved jointly over the task)",
                      lam=True, kmeans=True, k1_is="ls", incremental="statistics"))

NORM.register(NormStage("none", "", "none", doc="unchanged", features=_N + "identity_features",
                        proxies=_N + "identity_proxies"))
NORM.register(NormStage("l2", "", "L2", doc="rows scaled to unit L2 norm", features=_N + "l2_features",
                        proxies=_N + "l2_proxies"))
NORM.register(NormStage("cl2n", "", "CL2N", doc="centred on the task's train mean, then L2 (SimpleShot)",
                        features=_N + "cl2n_features", task_scoped=True))
NORM.register(NormStage("quantile", "", "quantile", doc="each class mapped onto the earlier classes' quantiles "
                        "(Hosoda et al.)", proxies=_N + "quantile_normalize_classes", task_scoped=True,
                        proxies_after=_N + "quantile_normalize_after"))

AGG.register(AggStage("max", _A + "max_scores", "max", "#4c72b0", "max inner product over a class's proxies"))
AGG.register(AggStage("mnn", _A + "vote_scores", "m-NN", "#dd8452", "vote of the m nearest proxies",
                      neighbours=True))

DISTANCE.register(DistanceStage("inner_product", "", "inner product", doc="the max rule's similarity (agg=max)"))
DISTANCE.register(DistanceStage("cosine", _A + "cosine_distances", "cosine", "#55a868"))
DISTANCE.register(DistanceStage("euclidean", _A + "euclidean_distances", "Euclidean", "#c44e52"))
DISTANCE.register(DistanceStage("manhattan", _A + "manhattan_distances", "Manhattan", "#8172b3"))
DISTANCE.register(DistanceStage("chebyshev", _A + "chebyshev_distances", "Chebyshev", "#937860"))
DISTANCE.register(DistanceStage("mahalanobis", _A + "exact_euclidean_distances", "Mahalanobis", "#da8bc3",
                                "Euclidean after whitening by the proxies' covariance",
                                prepare=_A + "mahalanobis_whitener"))

WEIGHTING.register(WeightingStage("uniform", _A + "uniform_weights", "uniform", doc="one vote each"))
WEIGHTING.register(WeightingStage("distance", _A + "inverse_distance_weights", "1/distance",
                                  doc="votes weighted by 1/(distance + 1e-10)"))
