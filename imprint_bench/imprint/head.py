"""ImprintedHead: an imprinted classifier you can keep, attach to a backbone, save and load."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from imprint_bench.data.base import FeatureSet
from imprint_bench.data.tasks import make_task
from imprint_bench.errors import ConfigError, printable
from imprint_bench.imprint.aggregate import class_scores
from imprint_bench.imprint.generate import LeastSquaresStatistics, least_squares_statistics
from imprint_bench.imprint.normalize import normalize_features
from imprint_bench.imprint.pipeline import Workspace
from imprint_bench.imprint.registry import check_norm, gen_stage
from imprint_bench.imprint.spec import AggSpec, MethodSpec, resolve_method

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


class ImprintedHead(nn.Module):
    """Proxies (after NORMpost) with their owning class, NORMinf and AGG: ``forward(x) -> [N, C] scores``.

    Build one with :meth:`fit` from train features and labels, or :meth:`from_workspace` (the runner's pipeline).
    Save/load uses safetensors (tensors plus a JSON metadata string; no pickle).
    """

    def __init__(
        self,
        proxies: torch.Tensor,
        owner: torch.Tensor,
        norm_inf: str,
        agg: AggSpec,
        class_names: list[str] | None = None,
        center: torch.Tensor | None = None,
        method: MethodSpec | None = None,
    ) -> None:
        super().__init__()
        self.register_buffer("proxies", proxies.detach().clone())
        self.register_buffer("owner", owner.detach().to(torch.int64).clone())
        self.register_buffer("center", (center if center is not None else proxies.new_zeros(proxies.shape[1])).clone())
        self.norm_inf = norm_inf
        self.agg = agg
        self.n_classes = int(owner.max()) + 1 if owner.numel() else 0
        self.class_names = list(class_names) if class_names else [str(i) for i in range(self.n_classes)]
        self.method = method
        self.growth = GrowthState()  # what taking new classes later needs (imprint_bench.imprint.incremental)

    @classmethod
    def fit(
        cls,
        x: torch.Tensor | ArrayLike,
        y: torch.Tensor | ArrayLike,
        method: MethodSpec | str = "ours",
        class_names: list[str] | None = None,
        seed: int = 0,
        lam: float = 1e-4,
    ) -> ImprintedHead:
        """Imprint a head from train features ``x`` [n, d] and labels ``y`` (class i = the i-th sorted label);
        tensors or anything numpy reads (arrays, lists).

        ``method`` is a MethodSpec or a Table-1 preset name (qi, hosoda, janson, ours, oracle);
        ``lam`` is the ridge λ used by ls/kls when the spec does not set one.
        """
        spec = resolve_method(method).canonical()
        x = torch.as_tensor(x).to(torch.float32)
        y = torch.as_tensor(y).to(torch.int64)
        features = FeatureSet(x, y, x[:1], y[:1], list(class_names or []), source="ImprintedHead.fit")
        task = make_task(features, "fit", None)
        if class_names:
            task.class_names = list(class_names)
        return cls.from_workspace(Workspace(task, seed=seed, lam=lam), spec)

    @classmethod
    def from_workspace(cls, workspace: Workspace, spec: MethodSpec) -> ImprintedHead:
        """The head of ``spec`` on a workspace's task (GEN → NORMpost), ready for inference, with what taking new
        classes later needs (the seed, each class's seeding label and rows; for ls/kls the LS statistics)."""
        proxies, owner, _ = workspace.imprinted(spec)
        head = cls(proxies, owner, spec.norm_inf, spec.agg, workspace.task.class_names, workspace.center, spec)
        task = workspace.task
        stage = gen_stage(spec.gen.name, spec.gen.target)
        head.growth = GrowthState(seed=workspace.seed, labels=list(task.labels),
                                  rows=[int(x.shape[0]) for x in task.train],
                                  lam=workspace.ridge(spec) if stage.lam else None)
        if stage.incremental == "statistics":
            xs = workspace.train_normed(spec.norm_pre)
            head.growth.ls = least_squares_statistics(xs, task.labels, spec.gen, workspace.seed,
                                                      workspace.grams(spec, xs))
            head.growth.raw = torch.cat(workspace.proxies(spec)[0])
        return head

    @property
    def n_proxies(self) -> int:
        return int(self.proxies.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores [N, C] (max: best inner product per class; mnn: votes)."""
        x = normalize_features(x.to(self.proxies.dtype), self.norm_inf, self.center)
        return class_scores(x, self.proxies, self.owner, self.n_classes, self.agg)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted class indices (ties go to the lowest index)."""
        return self.forward(x).argmax(1)

    def save(self, path: str | Path, extra: dict[str, str] | None = None) -> Path:
        """Write the head as a .safetensors file (tensors + JSON metadata); ``extra`` adds string metadata
        (e.g. the backbone config, so :class:`imprint_bench.model.ImprintedClassifier` can rebuild the model)."""
        from safetensors.torch import save_file

        path = Path(path)
        meta = {
            **(extra or {}),
            "norm_inf": self.norm_inf,
            "agg": json.dumps(self.agg.__dict__),
            "class_names": json.dumps(self.class_names),
            "method": json.dumps(self.method.to_dict() if self.method else None),
            "format": "imprint_bench.ImprintedHead/1",
        }
        meta.update(self.growth.metadata())
        tensors = {k: v.detach().cpu().contiguous() for k, v in (("proxies", self.proxies), ("owner", self.owner),
                                                                 ("center", self.center), *self.growth.tensors())}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        try:
            save_file(tensors, str(tmp), metadata=meta)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @staticmethod
    def read_metadata(path: str | Path) -> dict[str, str]:
        """The string metadata of a saved head (raises ValueError for other files)."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
        if meta.get("format") != "imprint_bench.ImprintedHead/1":
            raise ValueError(f"{path} is not an imprint_bench head file (missing format metadata)")
        return meta

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> ImprintedHead:
        """Load a head written by :meth:`save`, checking everything it holds (a ConfigError says what is wrong)."""
        from safetensors import safe_open

        meta = cls.read_metadata(path)
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        head = cls(*_checked_head(path, tensors, meta))
        head.growth = GrowthState.read(path, meta, tensors, head)
        return head


@dataclass
class GrowthState:
    """What a head keeps so that it can take new classes later without the old rows (``imprint-bench-extend``):
    the run seed and each class's seeding label (new classes draw as they would in one joint imprinting), the
    train rows per class (the running CL2N centre), λ, and for ls/kls the LS statistics with the GEN output before
    NORMpost. Heads saved before this existed have none of it; extending one says what is missing."""

    seed: int | None = None
    labels: list[int] | None = None
    rows: list[int] | None = None
    lam: float | None = None
    ls: LeastSquaresStatistics | None = None
    raw: torch.Tensor | None = None  # GEN output before NORMpost (ls/kls heads)

    def metadata(self) -> dict[str, str]:
        fields = {"seed": self.seed, "labels": self.labels, "rows": self.rows, "lam": self.lam,
                  "ls_rows": self.ls.rows if self.ls else None}
        return {f"growth.{k}": json.dumps(v) for k, v in fields.items() if v is not None}

    def tensors(self) -> list[tuple[str, torch.Tensor]]:
        out = [("growth.raw", self.raw)] if self.raw is not None else []
        if self.ls is not None:
            out += [("growth.ls_gram", self.ls.gram), ("growth.ls_means", self.ls.means),
                    ("growth.ls_group_class", self.ls.group_class)]
        return out

    @classmethod
    def read(cls, path: str | Path, meta: dict[str, str], tensors: dict[str, torch.Tensor],
             head: ImprintedHead) -> GrowthState:
        """The state stored in a head file, checked against the head (a ConfigError names the field)."""
        def bad(what: str) -> ConfigError:
            return ConfigError(f"{printable(str(path))} is not a valid imprint_bench head: {what}")

        values = {}
        for key in ("seed", "labels", "rows", "lam", "ls_rows"):
            raw = meta.get(f"growth.{key}")
            try:
                values[key] = json.loads(raw) if raw is not None else None
            except ValueError as err:
                raise bad(f"metadata field 'growth.{key}' is not valid JSON ({err})") from err
        for key in ("labels", "rows"):
            value = values[key]
            if value is not None and (not isinstance(value, list) or len(value) != head.n_classes
                                      or not all(isinstance(v, int) and v >= 0 for v in value)):
                raise bad(f"metadata field 'growth.{key}' must list one integer >= 0 per class ({head.n_classes})")
        if values["seed"] is not None and not isinstance(values["seed"], int):
            raise bad("metadata field 'growth.seed' must be an integer")
        d = head.proxies.shape[1]
        ls = None
        if "growth.ls_gram" in tensors:
            gram, means, group_class = (tensors.get(f"growth.ls_{k}") for k in ("gram", "means", "group_class"))
            if (gram.shape != (d, d) or means is None or group_class is None or means.ndim != 2
                    or means.shape[1] != d or group_class.shape != (means.shape[0],)
                    or not isinstance(values["ls_rows"], int)):
                raise bad("the LS statistics (growth.ls_*) do not fit the head's proxies")
            ls = LeastSquaresStatistics(gram.to(torch.float64), values["ls_rows"], means.to(torch.float64),
                                        group_class.to(torch.int64))
        raw = tensors.get("growth.raw")
        if raw is not None and raw.shape != head.proxies.shape:
            raise bad(f"growth.raw must have the proxies' shape {tuple(head.proxies.shape)}")
        return cls(values["seed"], values["labels"], values["rows"], values["lam"], ls, raw)


#: Bounds of what a head file may hold (a tampered file must not make the loader or the terminal work hard).
MAX_CLASSES = 1_000_000
MAX_NAME_CHARS = 1000


def _checked_head(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> tuple:
    """The constructor arguments of a saved head, validated: keys, shapes, dtypes, finite values, one name per
    class and every class with a proxy, known NORMinf and AGG options."""

    def bad(what: str) -> ConfigError:
        return ConfigError(f"{printable(str(path))} is not a valid imprint_bench head: {printable(what)}")

    missing = [k for k in ("proxies", "owner", "center") if k not in tensors]
    missing += [k for k in ("norm_inf", "agg", "class_names", "method") if k not in meta]
    if missing:
        raise bad(f"missing {missing}")
    proxies, owner, center = tensors["proxies"], tensors["owner"], tensors["center"]
    if proxies.ndim != 2 or not proxies.is_floating_point() or proxies.shape[0] == 0:
        raise bad(f"proxies must be a non-empty float matrix [P, d], got {proxies.dtype} {tuple(proxies.shape)}")
    if owner.shape != (proxies.shape[0],) or owner.dtype != torch.int64:
        raise bad(f"owner must be int64 [{proxies.shape[0]}] (one class per proxy), got {owner.dtype} "
                  f"{tuple(owner.shape)}")
    if center.shape != (proxies.shape[1],) or not center.is_floating_point():
        raise bad(f"center must be a float vector [{proxies.shape[1]}], got {center.dtype} {tuple(center.shape)}")
    if not (bool(torch.isfinite(proxies).all()) and bool(torch.isfinite(center).all())):
        raise bad("proxies or center contain NaN or Inf values")
    fields = {}
    for key in ("class_names", "agg", "method"):
        try:
            fields[key] = json.loads(meta[key])
        except ValueError as err:
            raise bad(f"metadata field {key!r} is not valid JSON ({err})") from err
    names, agg_fields, method = fields["class_names"], fields["agg"], fields["method"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise bad("metadata field 'class_names' must be a list of distinct strings")
    if len(names) > MAX_CLASSES or any(len(n) > MAX_NAME_CHARS for n in names):
        raise bad(f"metadata field 'class_names' holds {len(names)} names, the longest of "
                  f"{max(map(len, names), default=0)} characters (at most {MAX_CLASSES} names of "
                  f"{MAX_NAME_CHARS} characters)")
    counts = torch.bincount(owner.clamp_min(0), minlength=len(names)) if int(owner.min()) >= 0 else None
    if counts is None or counts.numel() != len(names) or bool((counts == 0).any()):
        raise bad(f"owner must assign every proxy to one of the {len(names)} classes of class_names, each class "
                  f"having a proxy (owner values {int(owner.min())}..{int(owner.max())})")
    try:
        check_norm("inf", meta["norm_inf"])
    except ConfigError as err:
        raise bad(f"metadata field 'norm_inf': {err}") from err
    if not isinstance(agg_fields, dict) or set(agg_fields) - set(AggSpec.__dataclass_fields__):
        raise bad(f"metadata field 'agg' must have the fields {', '.join(AggSpec.__dataclass_fields__)}, got "
                  f"{printable(repr(agg_fields))[:200]}")
    try:
        agg = AggSpec(**agg_fields)
        agg.validate()
    except (ConfigError, TypeError) as err:
        raise bad(f"metadata field 'agg': {err}") from err
    try:
        spec = MethodSpec.from_dict(method) if method else None
    except (ConfigError, TypeError, AttributeError) as err:
        raise bad(f"metadata field 'method': {err}") from err
    return proxies, owner, meta["norm_inf"], agg, names, center, spec
