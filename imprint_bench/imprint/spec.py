"""Frozen descriptions of one imprinting configuration (NORMpre → GEN → NORMpost → NORMinf → AGG).

Canonicalisation applies the reference's pruning rules (spec §5.2) so that configurations that are
the same computation share one hash, and validation rejects meaningless ones with a clear message.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from imprint_bench.errors import ConfigError, check_choice
from imprint_bench.imprint.registry import AGG, DISTANCE, GEN, WEIGHTING, check_norm, gen_stage

#: ``gen.backend``: who runs k-means (auto: batched torch for small classes, faiss for large ones on the CPU).
KMEANS_BACKENDS = ("auto", "torch", "faiss", "sklearn")
#: ``gen.seeding``: each class's k-means seed derived from (seed, "kmeans", class), or the run seed for every
#: class as the reference passes it to sklearn (``reference``, with ``gen.backend=sklearn``).
DERIVED_SEEDING = "derived"
REFERENCE_SEEDING = "reference"
SEEDINGS = (DERIVED_SEEDING, REFERENCE_SEEDING)
#: The gen.k value that chooses k per class from the class's own training points (``gen.k=auto``).
GEN_K_AUTO = "auto"
#: k = 0 in results: chosen per class by gen.k=auto (the ``k`` column is an integer; ``proxies_per_class`` holds
#: the k chosen for each class).
K_AUTO = 0
#: The backend field of canonical specs whose GEN does not cluster (its value is irrelevant; it keeps the value
#: it had before ``auto`` became the default, so that the run hashes of those configurations stay valid).
UNUSED_BACKEND = "faiss"
#: The backend field of streamed k-means (sklearn's MiniBatchKMeans.partial_fit).
STREAMING_BACKEND = "sklearn"


def _plain_value(value: Any) -> Any:
    """A hashable form of an argument value (lists become tuples, mappings sorted tuples of items)."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _plain_value(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_plain_value(v) for v in value)
    return value


@dataclass(frozen=True)
class GenSpec:
    """GEN: how proxies are generated per class. ``k=-1`` means every sample is a proxy; ``k="auto"`` (kmeans,
    kmedoids) chooses k per class by a criterion on the class's own points (``cluster.choose_k``). ``target`` and
    ``args`` name an external function and its keyword arguments (``gen=custom gen._target_=module.fn``)."""

    name: str = "mean"
    k: int | str = 1
    backend: str = "auto"
    lam: float | None = None  # ridge λ for ls/kls; None = the backbone's table value
    kmeans_iters: int = 300
    seeding: str = DERIVED_SEEDING
    target: str | None = None
    args: tuple[tuple[str, Any], ...] = ()
    streaming: bool = False  # proxies from batches of a class's rows, with O(k·d) state (stages that declare it)
    batch_size: int = 256  # rows per batch when streaming

    def validate(self) -> None:
        stage = gen_stage(self.name, self.target)
        if not isinstance(self.streaming, bool):
            raise ConfigError(f"gen.streaming must be true or false, got {self.streaming!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"gen.batch_size must be an integer >= 1, got {self.batch_size!r}")
        if self.streaming and not stage.streaming:
            valid = ", ".join(s.name for s in GEN if s.streaming)
            raise ConfigError(f"gen.streaming=true: {self.name} has no streaming form; these do: {valid}")
        if self.streaming and self.k == GEN_K_AUTO:
            raise ConfigError("gen.streaming=true needs an integer gen.k: k=auto compares k-means fits of all of a "
                              "class's rows")
        check_choice("k-means backend (gen.backend)", self.backend, KMEANS_BACKENDS)
        check_choice("k-means seeding (gen.seeding)", self.seeding, SEEDINGS)
        if self.seeding == REFERENCE_SEEDING and (not stage.kmeans or self.backend != "sklearn"):
            raise ConfigError(f"gen.seeding=reference reproduces the reference's sklearn k-means run by run: it needs "
                              f"gen.backend=sklearn and a k-means GEN (kmeans, kls); got gen.name={self.name}, "
                              f"gen.backend={self.backend}")
        if self.k == GEN_K_AUTO:
            if not stage.auto_k:
                valid = " or ".join(s.name for s in GEN if s.auto_k)
                raise ConfigError(f"gen.k=auto chooses k per class by a clustering criterion, valid with gen.name "
                                  f"{valid}; gen.name={self.name} {stage.no_auto_k}: give an integer k")
        elif isinstance(self.k, bool) or not isinstance(self.k, int) or self.k == 0 or self.k < -1:
            valid = ", ".join(s.name for s in GEN if s.auto_k)
            raise ConfigError(f"gen.k must be a positive integer or -1 (all samples) or auto (chosen per class; "
                              f"{valid}), got {self.k!r}")
        if self.lam is not None and (isinstance(self.lam, bool) or not isinstance(self.lam, int | float)
                                     or not math.isfinite(self.lam) or self.lam < 0):
            raise ConfigError(f"gen.lam must be a finite number >= 0 (or null for the backbone's value), "
                              f"got {self.lam!r}")
        if isinstance(self.kmeans_iters, bool) or not isinstance(self.kmeans_iters, int) or self.kmeans_iters < 1:
            raise ConfigError(f"gen.kmeans_iters must be an integer >= 1, got {self.kmeans_iters!r}")
        if self.args and not stage.external:
            raise ConfigError(f"unknown gen keys {sorted(a for a, _ in self.args)} for gen.name={self.name}")

    @property
    def label(self) -> str:
        """The GEN column of results: the method's name, or an external function's dotted name."""
        return self.target or self.name

    def args_text(self) -> str:
        """An external function's arguments as JSON (results column ``gen_args``); empty for built-ins."""
        return json.dumps(dict(self.args), sort_keys=True, default=str) if self.args else ""

    def identity(self) -> dict[str, Any]:
        """What the run hash covers: every field, the later-added ones only when set (so that the hashes of runs
        made before they existed stay valid)."""
        out = asdict(self)
        for key, unset in (("seeding", DERIVED_SEEDING), ("target", None), ("args", ()), ("streaming", False)):
            if out[key] == unset:
                del out[key]
        if not self.streaming:
            del out["batch_size"]
        if "args" in out:
            out["args"] = {k: v for k, v in self.args}
        return out


@dataclass(frozen=True)
class AggSpec:
    """AGG: ``max`` (inner product, max over a class's proxies) or ``mnn`` (m-nearest-neighbour vote)."""

    name: str = "max"
    m: int = -1
    distance: str = "inner_product"
    weighting: str = "uniform"

    def validate(self) -> None:
        stage = AGG.get(self.name)
        DISTANCE.get(self.distance)
        WEIGHTING.get(self.weighting)
        if stage.neighbours:
            if isinstance(self.m, bool) or not isinstance(self.m, int) or self.m < 1:
                raise ConfigError(f"agg.m must be an integer >= 1 for {self.name}, got {self.m!r}")
            if self.distance == "inner_product":
                valid = ", ".join(n for n in DISTANCE.names() if n != "inner_product")
                raise ConfigError(f"agg={self.name} needs a distance: one of {valid} (inner_product is only "
                                  "meaningful with agg=max)")


@dataclass(frozen=True)
class MethodSpec:
    """One full imprinting configuration."""

    norm_pre: str = "l2"
    gen: GenSpec = field(default_factory=GenSpec)
    norm_post: str = "l2"
    norm_inf: str = "l2"
    agg: AggSpec = field(default_factory=AggSpec)

    def validate(self) -> None:
        check_norm("pre", self.norm_pre)
        check_norm("post", self.norm_post)
        check_norm("inf", self.norm_inf)
        self.gen.validate()
        self.agg.validate()
        if self.norm_pre != "none" and self.norm_pre != self.norm_inf:
            raise ConfigError(
                f"NORMpre={self.norm_pre!r} requires NORMinf={self.norm_pre!r} (train and test features must "
                f"live in the same space); got NORMinf={self.norm_inf!r}. Valid pairs: NORMpre none with any "
                "NORMinf, or NORMpre == NORMinf"
            )

    def unused_options(self) -> list[str]:
        """The options set here that do nothing in this configuration (its stages' declared properties say so)."""
        gen, agg = self.gen, self.agg
        stage = gen_stage(gen.name, gen.target)
        name = f"gen.name={gen.name}"
        out = []
        if stage.fixed_k is not None and gen.k != stage.fixed_k:
            out.append(f"gen.k={gen.k} does nothing with {name} (its k is always {stage.fixed_k})")
        if not stage.kmeans and (gen.backend, gen.kmeans_iters) != (GenSpec.backend, GenSpec.kmeans_iters):
            out.append(f"gen.backend/gen.kmeans_iters do nothing with {name} (it runs no k-means)")
        if not stage.lam and gen.lam is not None:
            out.append(f"gen.lam={gen.lam} does nothing with {name} (only least squares takes a ridge λ)")
        if not AGG.get(agg.name).neighbours and (agg.m != AggSpec.m or agg.weighting != AggSpec.weighting):
            out.append(f"agg.m/agg.weighting do nothing with agg={agg.name} (only m-NN votes)")
        return out

    def canonical(self, shots: int = -1) -> MethodSpec:
        """Apply the reference's pruning rules so equivalent configurations compare (and hash) equal; what a
        GEN method declares in its registry entry decides (``registry.GenStage``).

        - max aggregation: distance inner_product uses the max rule; any other distance means 1-NN by
          that distance (reference behaviour), so it becomes ``mnn`` with m=1.
        - mnn with m=1: weighting cannot matter, so it is fixed to ``uniform``.
        - a method with a fixed k gets it (mean and ls: 1; all: -1); kls with k=1 is ls (``k1_is``); any other
          built-in method with k=-1 keeps every sample, i.e. is ``all``.
        - k-means backend, iterations and seeding only matter for methods that cluster; λ only for ls/kls.
        - few-shot: with n shots per class and k > n, k becomes n (spec rule 11), before the rules above;
          ``k="auto"`` stays (its choice is bounded by each class's rows). External functions keep their k.
        """
        gen, agg = self.gen, self.agg
        if not AGG.get(agg.name).neighbours:
            agg = AggSpec("mnn", 1, agg.distance, "uniform") if agg.distance != "inner_product" else AggSpec()
        if agg.name == "mnn" and agg.m == 1:
            agg = replace(agg, weighting="uniform")
        stage = gen_stage(gen.name, gen.target)
        name, k = gen.name, gen.k
        if stage.reference_rules and shots > 0 and k != GEN_K_AUTO and k > shots:
            k = shots
        if stage.k1_is and k == 1:
            name, stage = stage.k1_is, GEN.get(stage.k1_is)
        if k == -1 and stage.reference_rules and stage.fixed_k is None:  # every sample (spec §4.2 rule 1)
            name, stage = "all", GEN.get("all")
        if stage.fixed_k is not None:
            k = stage.fixed_k
        streaming = gen.streaming and stage.streaming is not None  # e.g. k-means with k=-1 is all: nothing to stream
        clusters = stage.kmeans and not streaming  # streamed k-means is sklearn's MiniBatchKMeans, one pass
        return replace(self, agg=agg, gen=replace(
            gen, name=name, k=k,
            backend=gen.backend if clusters else (STREAMING_BACKEND if streaming and stage.kmeans
                                                  else UNUSED_BACKEND),
            kmeans_iters=gen.kmeans_iters if clusters else GenSpec.kmeans_iters,
            seeding=gen.seeding if clusters else DERIVED_SEEDING,
            lam=gen.lam if stage.lam else None,
            streaming=streaming, batch_size=gen.batch_size if streaming else GenSpec.batch_size))

    def to_flat(self) -> dict[str, Any]:
        """Flat dict with the results-table column names (``k="auto"`` is written as ``K_AUTO``)."""
        return {
            "norm_pre": self.norm_pre,
            "gen": self.gen.label,
            "gen_args": self.gen.args_text(),
            "k": K_AUTO if self.gen.k == GEN_K_AUTO else self.gen.k,
            "norm_post": self.norm_post,
            "norm_inf": self.norm_inf,
            "agg": self.agg.name,
            "m": self.agg.m,
            "distance": self.agg.distance,
            "weighting": self.agg.weighting,
            "kmeans_backend": self.gen.backend,
            "kmeans_iters": self.gen.kmeans_iters,
            "seeding": self.gen.seeding,
            "lam": self.gen.lam,
            "batch_size": self.gen.batch_size if self.gen.streaming else 0,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MethodSpec:
        """Build from a nested mapping ``{norm: {pre, post, inf}, gen: {...}, agg: {...}}``. A ``gen`` node with
        ``_target_`` names an external function; its other keys beyond GenSpec's fields are its arguments."""
        norm = dict(d.get("norm") or {})
        gen = dict(d.get("gen") or {})
        agg = dict(d.get("agg") or {})
        unknown = set(d) - {"norm", "gen", "agg", "name"}
        if unknown:
            raise ConfigError(f"unknown method keys {sorted(unknown)}; valid: norm, gen, agg")
        gen_fields = set(GenSpec.__dataclass_fields__) - {"target", "args"}
        target = gen.pop("_target_", None) or gen.pop("target", None)  # a config node, or to_dict()'s form
        args = dict(gen.pop("args", None) or {})
        if target:
            args.update({key: gen.pop(key) for key in sorted(set(gen) - gen_fields)})
        for what, given, allowed in (("norm", norm, {"pre", "post", "inf"}), ("gen", gen, gen_fields),
                                     ("agg", agg, set(AggSpec.__dataclass_fields__))):
            extra = set(given) - allowed
            if extra:
                raise ConfigError(f"unknown {what} keys {sorted(extra)}; valid: {sorted(allowed)}")
        return cls(
            norm_pre=norm.get("pre", "l2"),
            gen=GenSpec(**gen, target=target, args=_plain_value(args)),
            norm_post=norm.get("post", "l2"),
            norm_inf=norm.get("inf", "l2"),
            agg=AggSpec(**agg),
        )

    def to_dict(self) -> dict[str, Any]:
        """The nested form the run hash covers."""
        return {
            "norm": {"pre": self.norm_pre, "post": self.norm_post, "inf": self.norm_inf},
            "gen": self.gen.identity(),
            "agg": asdict(self.agg),
        }


#: The five rows of the paper's Table 1 (README of DATEXIS/IMPRINT), exactly.
PRESETS: dict[str, MethodSpec] = {
    "qi": MethodSpec("l2", GenSpec("mean", 1), "l2", "l2", AggSpec("max")),
    "hosoda": MethodSpec("none", GenSpec("mean", 1), "quantile", "none", AggSpec("max")),
    "janson": MethodSpec("none", GenSpec("mean", 1), "none", "none", AggSpec("mnn", 1, "euclidean", "distance")),
    "ours": MethodSpec("l2", GenSpec("kmeans", 20), "l2", "l2", AggSpec("max")),
    "oracle": MethodSpec("none", GenSpec("ls", 1), "none", "none", AggSpec("max")),
}


def resolve_method(method: MethodSpec | str) -> MethodSpec:
    """A MethodSpec from a spec or a preset name, validated."""
    if isinstance(method, str):
        if method not in PRESETS:
            raise ConfigError(f"unknown method preset {method!r}; valid: {', '.join(PRESETS)}")
        method = PRESETS[method]
    method.validate()
    return method


def preset_name(spec: MethodSpec, shots: int = -1) -> str:
    """The Table-1 preset this canonical spec equals (ignoring the k-means backend), or ``custom``."""
    canon = spec.canonical(shots)
    for name, preset in PRESETS.items():
        p = preset.canonical(shots)
        if replace(canon, gen=replace(canon.gen, backend="auto", kmeans_iters=300, lam=None,
                                      seeding=DERIVED_SEEDING)) == replace(p, gen=replace(p.gen, backend="auto",
                                                                                         lam=None)):
            return name
    return "custom"
