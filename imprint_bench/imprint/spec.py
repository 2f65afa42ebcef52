"""Frozen descriptions of one imprinting configuration (NORMpre → GEN → NORMpost → NORMinf → AGG).

Canonicalisation applies the reference's pruning rules (spec §5.2) so that configurations that are
the same computation share one hash, and validation rejects meaningless ones with a clear message.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from imprint_bench.errors import ConfigError, check_choice


class FeatureNorm(StrEnum):
    """NORMpre and NORMinf: how features are normalised before GEN and at inference."""

    none = "none"
    l2 = "l2"
    cl2n = "cl2n"


class ProxyNorm(StrEnum):
    """NORMpost: how proxies are normalised after GEN."""

    none = "none"
    l2 = "l2"
    quantile = "quantile"


class GenMethod(StrEnum):
    """GEN: how proxies are generated."""

    all = "all"
    mean = "mean"
    random = "random"
    kmeans = "kmeans"
    kmedoids = "kmedoids"
    fps = "fps"
    cov_max = "cov_max"
    none = "none"
    ls = "ls"
    kls = "kls"


class KmeansBackend(StrEnum):
    """Who runs k-means (auto: batched torch for small classes, faiss for large ones on the CPU)."""

    auto = "auto"
    torch = "torch"
    faiss = "faiss"
    sklearn = "sklearn"


class AggMethod(StrEnum):
    """AGG: max over a class's proxies, or an m-nearest-neighbour vote."""

    max = "max"
    mnn = "mnn"


class Distance(StrEnum):
    """The distance of AGG (inner_product means the max rule)."""

    inner_product = "inner_product"
    cosine = "cosine"
    euclidean = "euclidean"
    manhattan = "manhattan"
    chebyshev = "chebyshev"
    mahalanobis = "mahalanobis"


class Weighting(StrEnum):
    """How m-NN votes are weighted."""

    uniform = "uniform"
    distance = "distance"


# The stage names, one enumeration each: the config schemas (imprint_bench/config_schema.py) type their fields
# with them, so that Hydra rejects a wrong name at compose time; the engine and the grid validate with them.
NORM_PRE = tuple(FeatureNorm)
NORM_POST = tuple(ProxyNorm)
NORM_INF = tuple(FeatureNorm)
GEN_METHODS = tuple(GenMethod)
KMEANS_BACKENDS = tuple(KmeansBackend)
AGG_METHODS = tuple(AggMethod)
DISTANCES = tuple(Distance)
WEIGHTINGS = tuple(Weighting)

#: Methods whose proxies for one class depend only on that class's samples (cacheable per class).
PER_CLASS_GEN = ("all", "mean", "random", "kmeans", "kmedoids", "fps", "cov_max", "none")
#: Methods whose result depends on the run seed.
SEEDED_GEN = ("random", "kmeans", "fps", "none", "kls")
#: Methods solved jointly over a task's classes (least squares), with a ridge λ.
JOINT_GEN = ("ls", "kls")
#: Methods that use a k-means backend.
KMEANS_GEN = ("kmeans", "kls")
#: The gen.k value that chooses k per class from the class's own training points (``gen.k=auto``).
GEN_K_AUTO = "auto"
#: k = 0 in results: chosen per class by gen.k=auto (the ``k`` column is an integer; ``proxies_per_class`` holds
#: the k chosen for each class).
K_AUTO = 0
#: Methods whose k can be chosen per class by a clustering criterion (gen.k=auto); why the others cannot.
AUTO_K_GEN = ("kmeans", "kmedoids")
_NO_AUTO_K = {
    "mean": "has exactly one proxy per class",
    "ls": "has exactly one proxy per class",
    "all": "keeps every sample",
    "random": "has no fit criterion to choose k by",
    "fps": "has no fit criterion to choose k by",
    "cov_max": "has no fit criterion to choose k by",
    "none": "has no fit criterion to choose k by",
    "kls": "does not support it (its k-means pseudo-classes are solved jointly over the task)",
}
#: The backend field of canonical specs whose GEN does not cluster (its value is irrelevant; it keeps the value
#: it had before ``auto`` became the default, so that the run hashes of those configurations stay valid).
UNUSED_BACKEND = "faiss"


@dataclass(frozen=True)
class GenSpec:
    """GEN: how proxies are generated per class. ``k=-1`` means every sample is a proxy; ``k="auto"`` (kmeans,
    kmedoids) chooses k per class by a criterion on the class's own points (``cluster.choose_k``)."""

    name: str = "mean"
    k: int | str = 1
    backend: str = "auto"
    lam: float | None = None  # ridge λ for ls/kls; None = the backbone's table value
    kmeans_iters: int = 300

    def validate(self) -> None:
        check_choice("GEN method", self.name, GEN_METHODS)
        check_choice("k-means backend", self.backend, KMEANS_BACKENDS)
        if self.k == GEN_K_AUTO:
            if self.name not in AUTO_K_GEN:
                raise ConfigError(
                    f"gen.k=auto chooses k per class by a clustering criterion, valid with gen.name "
                    f"{' or '.join(AUTO_K_GEN)}; gen.name={self.name} {_NO_AUTO_K[self.name]}: give an integer k"
                )
        elif not isinstance(self.k, int) or self.k == 0 or self.k < -1:
            raise ConfigError(
                f"gen.k must be a positive integer or -1 (all samples) or auto (chosen per class; "
                f"{', '.join(AUTO_K_GEN)}), got {self.k!r}"
            )
        if self.lam is not None and self.lam < 0:
            raise ConfigError(f"gen.lam must be >= 0 (or null for the backbone's value), got {self.lam!r}")
        if self.kmeans_iters < 1:
            raise ConfigError(f"gen.kmeans_iters must be >= 1, got {self.kmeans_iters!r}")


@dataclass(frozen=True)
class AggSpec:
    """AGG: ``max`` (inner product, max over a class's proxies) or ``mnn`` (m-nearest-neighbour vote)."""

    name: str = "max"
    m: int = -1
    distance: str = "inner_product"
    weighting: str = "uniform"

    def validate(self) -> None:
        check_choice("AGG method", self.name, AGG_METHODS)
        check_choice("AGG distance", self.distance, DISTANCES)
        check_choice("AGG weighting", self.weighting, WEIGHTINGS)
        if self.name == "mnn":
            if not isinstance(self.m, int) or self.m < 1:
                raise ConfigError(f"agg.m must be an integer >= 1 for mnn, got {self.m!r}")
            if self.distance == "inner_product":
                raise ConfigError(
                    "agg=mnn needs a distance: one of cosine, euclidean, manhattan, chebyshev, mahalanobis "
                    "(inner_product is only meaningful with agg=max)"
                )


@dataclass(frozen=True)
class MethodSpec:
    """One full imprinting configuration."""

    norm_pre: str = "l2"
    gen: GenSpec = field(default_factory=GenSpec)
    norm_post: str = "l2"
    norm_inf: str = "l2"
    agg: AggSpec = field(default_factory=AggSpec)

    def validate(self) -> None:
        check_choice("NORMpre", self.norm_pre, NORM_PRE)
        check_choice("NORMpost", self.norm_post, NORM_POST)
        check_choice("NORMinf", self.norm_inf, NORM_INF)
        self.gen.validate()
        self.agg.validate()
        if self.norm_pre != "none" and self.norm_pre != self.norm_inf:
            raise ConfigError(
                f"NORMpre={self.norm_pre!r} requires NORMinf={self.norm_pre!r} (train and test features must "
                f"live in the same space); got NORMinf={self.norm_inf!r}. Valid pairs: NORMpre none with any "
                "NORMinf, or NORMpre == NORMinf"
            )

    def canonical(self, shots: int = -1) -> MethodSpec:
        """Apply the reference's pruning rules so equivalent configurations compare (and hash) equal.

        - max aggregation: distance inner_product uses the max rule; any other distance means 1-NN by
          that distance (reference behaviour), so it becomes ``mnn`` with m=1.
        - mnn with m=1: weighting cannot matter, so it is fixed to ``uniform``.
        - mean and ls have exactly one proxy (k=1); all has k=-1; kls with k=1 is ls; any other
          method with k=-1 keeps every sample, i.e. is ``all``.
        - k-means backend and iterations only matter for kmeans/kls; λ only for ls/kls.
        - few-shot: with n shots per class and k > n, k becomes n (spec rule 11), before the rules above;
          ``k="auto"`` stays (its choice is bounded by each class's rows).
        """
        gen, agg = self.gen, self.agg
        if agg.name == "max":
            agg = AggSpec("mnn", 1, agg.distance, "uniform") if agg.distance != "inner_product" else AggSpec()
        if agg.name == "mnn" and agg.m == 1:
            agg = replace(agg, weighting="uniform")
        name, k = gen.name, gen.k
        if shots > 0 and k != GEN_K_AUTO and k > shots:
            k = shots
        if name == "kls" and k == 1:
            name = "ls"
        if k == -1 and name not in ("mean", "ls"):  # k = -1 returns every sample (spec §4.2 rule 1)
            name = "all"
        if name in ("mean", "ls"):
            k = 1
        elif name == "all":
            k = -1
        backend = gen.backend if name in KMEANS_GEN else UNUSED_BACKEND
        iters = gen.kmeans_iters if name in KMEANS_GEN else GenSpec.kmeans_iters
        lam = gen.lam if name in JOINT_GEN else None
        return replace(self, gen=GenSpec(name, k, backend, lam, iters), agg=agg)

    def to_flat(self) -> dict[str, Any]:
        """Flat dict with the results-table column names (``k="auto"`` is written as ``K_AUTO``)."""
        return {
            "norm_pre": self.norm_pre,
            "gen": self.gen.name,
            "k": K_AUTO if self.gen.k == GEN_K_AUTO else self.gen.k,
            "norm_post": self.norm_post,
            "norm_inf": self.norm_inf,
            "agg": self.agg.name,
            "m": self.agg.m,
            "distance": self.agg.distance,
            "weighting": self.agg.weighting,
            "kmeans_backend": self.gen.backend,
            "kmeans_iters": self.gen.kmeans_iters,
            "lam": self.gen.lam,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MethodSpec:
        """Build from a nested mapping ``{norm: {pre, post, inf}, gen: {...}, agg: {...}}``."""
        norm = dict(d.get("norm") or {})
        gen = dict(d.get("gen") or {})
        agg = dict(d.get("agg") or {})
        unknown = set(d) - {"norm", "gen", "agg", "name"}
        if unknown:
            raise ConfigError(f"unknown method keys {sorted(unknown)}; valid: norm, gen, agg")
        for what, given, allowed in (
            ("norm", norm, {"pre", "post", "inf"}),
            ("gen", gen, set(GenSpec.__dataclass_fields__)),
            ("agg", agg, set(AggSpec.__dataclass_fields__)),
        ):
            extra = set(given) - allowed
            if extra:
                raise ConfigError(f"unknown {what} keys {sorted(extra)}; valid: {sorted(allowed)}")
        return cls(
            norm_pre=norm.get("pre", "l2"),
            gen=GenSpec(**gen),
            norm_post=norm.get("post", "l2"),
            norm_inf=norm.get("inf", "l2"),
            agg=AggSpec(**agg),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "norm": {"pre": self.norm_pre, "post": self.norm_post, "inf": self.norm_inf},
            "gen": asdict(self.gen),
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
        if replace(canon, gen=replace(canon.gen, backend="auto", kmeans_iters=300, lam=None)) == replace(
            p, gen=replace(p.gen, backend="auto", lam=None)
        ):
            return name
    return "custom"
