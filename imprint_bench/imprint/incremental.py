"""Grow a saved head: add classes from their rows alone, without the rows of the classes it already has.

What each stage does is declared in its registry entry:

- GEN ``incremental="per_class"`` (mean, k-means, all, fps, ...): the new classes' proxies are generated as one
  joint imprinting would make them (the head's run seed; each new class's seeding label follows the head's), and
  the existing proxies stay bit-identical.
- GEN ``incremental="statistics"`` (ls, kls): every proxy is re-solved from the LS statistics the head keeps
  (XᵀX, the row count, the group means), with the new classes' statistics added: the same system as one joint solve.
- NORMpost ``proxies_after`` (quantile): new classes are mapped onto the pool of the existing outputs, exactly as the
  sequential pass; other kinds normalise each new block on its own.
- NORM ``task_scoped`` (cl2n as NORMpre or NORMinf): the centre is the running mean of all classes' rows. Existing
  proxies were made against the old centre and are kept (the head has no rows to redo them); inference uses the new
  centre. The extension says so: such a head is not exactly the joint one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

import torch

from imprint_bench.errors import ConfigError
from imprint_bench.imprint.generate import (
    class_seeds,
    generate_class_proxies,
    least_squares_blocks,
    least_squares_statistics,
)
from imprint_bench.imprint.head import GrowthState, ImprintedHead
from imprint_bench.imprint.normalize import normalize_features, normalize_proxies
from imprint_bench.imprint.registry import NORM, check_norm, gen_stage, resolve_function
from imprint_bench.imprint.spec import MethodSpec


@dataclass
class Extension:
    """The grown head, and what a user must know about it (which existing proxies changed, and why)."""

    head: ImprintedHead
    added: list[str]
    replaced: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    exact: bool = True  # equal to imprinting every class at once


def check_extensible(head: ImprintedHead, names: list[str], dim: int, replace_existing: bool = False) -> None:
    """Everything :func:`extend_head` needs, checked before any work: a ConfigError says what is missing."""
    spec = head.method
    if spec is None:
        raise ConfigError("the head records no imprinting method, so new classes cannot be imprinted like its own; "
                          "imprint it again with this version")
    if dim != head.proxies.shape[1]:
        raise ConfigError(f"the new rows have {dim} features but the head's proxies have {head.proxies.shape[1]}: "
                          "they come from another backbone (or another layer); extract them with the head's backbone")
    stage = gen_stage(spec.gen.name, spec.gen.target)
    growth = head.growth
    missing = [what for what, needed, value in (
        ("the run seed", stage.seeded or stage.incremental == "statistics", growth.seed),
        ("each class's seeding label", True, growth.labels),
        ("each class's row count", NORM.get(spec.norm_pre).task_scoped or NORM.get(spec.norm_inf).task_scoped,
         growth.rows),
        ("the LS statistics (XᵀX, row count, group means) and λ", stage.incremental == "statistics",
         growth.ls is not None and growth.raw is not None and growth.lam is not None),
    ) if needed and not value]
    if missing:
        raise ConfigError(f"the head lacks {', '.join(missing)}, which {spec.gen.name} needs to take new classes "
                          "(it was saved before heads kept them): imprint it again with this version")
    if stage.incremental == "statistics" and NORM.get(spec.norm_pre).task_scoped:
        raise ConfigError(f"{spec.gen.name} with NORMpre {spec.norm_pre} cannot take new classes exactly: the centre "
                          "moves with them and the LS statistics of the centred rows cannot be updated without the "
                          "rows; imprint all classes at once")
    if not names:
        raise ConfigError("no classes to add (the data has no training rows)")
    if len(set(names)) != len(names):
        raise ConfigError(f"the new data names a class twice: {sorted({n for n in names if names.count(n) > 1})}")
    clash = sorted(set(names) & set(head.class_names))
    if clash and not replace_existing:
        raise ConfigError(f"classes {clash[:10]} are already in the head ({len(clash)} in all): pass --replace to "
                          "imprint them again from the new rows, or rename them")
    centred = [kind for kind in (spec.norm_pre, spec.norm_inf) if NORM.get(kind).task_scoped]
    if clash and centred:
        raise ConfigError(f"--replace cannot take classes out of a {centred[0]} head: its centre holds the old rows "
                          "of those classes, which the head does not keep; imprint all classes at once")
    if clash and stage.incremental == "statistics":
        raise ConfigError(f"--replace cannot take classes out of a {spec.gen.name} head: its LS statistics are summed "
                          "over all classes, so one class's share cannot be removed; imprint all classes at once")


def extend_head(head: ImprintedHead, xs: list[torch.Tensor], names: list[str], replace_existing: bool = False,
                labels: list[int] | None = None) -> Extension:
    """The head with classes ``names`` (train rows ``xs``, one tensor per class, NORMpre not applied) added after
    its own; with ``replace_existing``, a class it already has is taken out and imprinted again from its new rows.
    ``labels``: the new classes' seeding labels (default: numbered after the head's), e.g. their dataset labels, so
    that they draw as in a joint imprinting of the same dataset classes."""
    check_extensible(head, names, int(xs[0].shape[1]) if xs else head.proxies.shape[1], replace_existing)
    replaced = [n for n in names if n in head.class_names]
    if replaced:
        head = _without(head, replaced)
    spec, growth = head.method, head.growth
    assert spec is not None and growth.labels is not None
    stage = gen_stage(spec.gen.name, spec.gen.target)
    device, dtype = head.proxies.device, head.proxies.dtype
    xs = [x.to(device, dtype) for x in xs]
    notes: list[str] = []
    exact = True
    rows = [int(x.shape[0]) for x in xs]
    center = head.center
    if NORM.get(spec.norm_pre).task_scoped or NORM.get(spec.norm_inf).task_scoped:
        assert growth.rows is not None
        old_rows = sum(growth.rows)
        center = (head.center * old_rows + sum(x.sum(0) for x in xs)) / (old_rows + sum(rows))
        if NORM.get(spec.norm_pre).task_scoped and head.n_classes:
            exact = False
            notes.append(f"NORMpre {spec.norm_pre}: the centre moved to the mean of all {old_rows + sum(rows)} rows; "
                         f"the {head.n_proxies} existing proxies were made against the old centre and are kept (the "
                         "head has no rows to redo them), so the head differs from imprinting all classes at once")
        if NORM.get(spec.norm_inf).task_scoped:
            notes.append(f"NORMinf {spec.norm_inf}: inference now centres on the new mean, which changes the scores "
                         "of every class")
    if labels is None:
        start = max(growth.labels, default=-1) + 1
        labels = list(range(start, start + len(xs)))
    elif len(labels) != len(xs) or set(labels) & set(growth.labels):
        raise ConfigError(f"seeding labels {labels} must be one per new class and differ from the head's")
    normed = [normalize_features(x, spec.norm_pre, center) for x in xs]
    old_blocks = [head.proxies[head.owner == i] for i in range(head.n_classes)]
    if stage.incremental == "statistics":
        assert growth.ls is not None and growth.raw is not None and growth.lam is not None and growth.seed is not None
        added = least_squares_statistics(normed, labels, spec.gen, growth.seed)
        stats = growth.ls.add(added, head.n_classes)
        old_raw = [growth.raw[head.owner == i] for i in range(head.n_classes)]
        raw = least_squares_blocks(stats, growth.lam, [*old_raw, *normed])
        blocks = normalize_proxies(raw, spec.norm_post)
        if head.n_classes:
            notes.append(f"{spec.gen.name}: all {head.n_classes} existing classes' proxies were re-solved from the "
                         "LS statistics with the new classes (the joint solution)")
        growth = replace(growth, ls=stats, raw=torch.cat(raw))
    else:
        seed = growth.seed if growth.seed is not None else 0
        blocks = _appended(spec, old_blocks, generate_class_proxies(normed, labels, spec.gen, seed))
    grown = _assembled(head, blocks, names, labels, rows, center, growth)
    return Extension(grown, list(names), replaced, notes, exact)


def extend_head_streamed(head: ImprintedHead, streams: list[Callable[[], Iterable[torch.Tensor]]], names: list[str],
                         replace_existing: bool = False) -> Extension:
    """:func:`extend_head` for a head imprinted with ``gen.streaming=true``, from a stream of row batches per class
    (``streams[i]()`` yields class i's batches, e.g. features as a backbone extracts them): no class's rows are
    held, only the GEN's O(k·d) state. Needs a per-class GEN and no CL2N (its centre would need the rows first)."""
    spec = head.method
    stage = gen_stage(spec.gen.name, spec.gen.target) if spec is not None else None
    if spec is None or stage is None or not spec.gen.streaming or stage.streaming is None:
        raise ConfigError("streaming new classes needs a head imprinted with gen.streaming=true (mean or kmeans)")
    centred = [kind for kind in (spec.norm_pre, spec.norm_inf) if NORM.get(kind).task_scoped]
    if centred:
        raise ConfigError(f"streaming new classes into a {centred[0]} head needs the new rows' mean before their "
                          "proxies: hold them instead (an .npz), or imprint without CL2N")
    check_extensible(head, names, head.proxies.shape[1], replace_existing)
    replaced = [n for n in names if n in head.class_names]
    if replaced:
        head = _without(head, replaced)
    growth = head.growth
    assert growth.labels is not None
    start = max(growth.labels, default=-1) + 1
    labels = list(range(start, start + len(streams)))
    rows = [0] * len(streams)
    stream_fn = resolve_function(stage.streaming)

    def normed(i: int) -> Iterator[torch.Tensor]:
        for batch in _rebatched(streams[i](), spec.gen.batch_size):  # the GEN's batches, as in one joint imprinting
            if batch.shape[1] != head.proxies.shape[1]:
                raise ConfigError(f"the new rows have {batch.shape[1]} features but the head's proxies have "
                                  f"{head.proxies.shape[1]}: they come from another backbone")
            rows[i] += int(batch.shape[0])
            yield normalize_features(batch.to(head.proxies.device, head.proxies.dtype), spec.norm_pre)

    seeds = class_seeds(spec.gen, growth.seed if growth.seed is not None else 0, labels)
    new = [stream_fn(normed(i), spec.gen.k, seeds[i] if stage.seeded else None) for i in range(len(streams))]
    old_blocks = [head.proxies[head.owner == i] for i in range(head.n_classes)]
    grown = _assembled(head, _appended(spec, old_blocks, new), names, labels, rows, head.center, growth)
    return Extension(grown, list(names), replaced)


def _rebatched(batches: Iterable[torch.Tensor], size: int) -> Iterator[torch.Tensor]:
    """The rows of ``batches`` again, in batches of exactly ``size`` rows (the last one shorter)."""
    held: list[torch.Tensor] = []
    count = 0
    for batch in batches:
        held.append(batch)
        count += int(batch.shape[0])
        while count >= size:
            rows = torch.cat(held)
            yield rows[:size]
            held, count = [rows[size:]], count - size
    if count:
        yield torch.cat(held)


def _appended(spec: MethodSpec, old_blocks: list[torch.Tensor], new: list[torch.Tensor]) -> list[torch.Tensor]:
    """The existing NORMpost'd blocks, then the new raw ones NORMpost'd after them (quantile: onto their pool)."""
    post = check_norm("post", spec.norm_post)
    return [*old_blocks, *(post.proxies_after_fn()(new, old_blocks) if post.proxies_after
                           else normalize_proxies(new, spec.norm_post))]


def _assembled(head: ImprintedHead, blocks: list[torch.Tensor], names: list[str], labels: list[int], rows: list[int],
               center: torch.Tensor, growth: GrowthState) -> ImprintedHead:
    """The grown head from its proxy blocks (old classes first), with its growth state carried on."""
    owner = torch.cat([torch.full((b.shape[0],), i, dtype=torch.int64, device=head.proxies.device)
                       for i, b in enumerate(blocks)])
    grown = ImprintedHead(torch.cat(blocks), owner, head.norm_inf, head.agg, [*head.class_names, *names], center,
                          head.method)
    assert growth.labels is not None
    grown.growth = replace(growth, labels=[*growth.labels, *labels],
                           rows=[*growth.rows, *rows] if growth.rows is not None else None)
    return grown


def _without(head: ImprintedHead, names: list[str]) -> ImprintedHead:
    """The head without classes ``names`` (per-class methods only: their proxies, rows and labels go)."""
    keep = [i for i, n in enumerate(head.class_names) if n not in names]
    index = {old: new for new, old in enumerate(keep)}
    mask = torch.isin(head.owner, torch.tensor(keep, device=head.owner.device))
    owner = torch.tensor([index[int(o)] for o in head.owner[mask].tolist()], dtype=torch.int64,
                         device=head.owner.device)
    growth = head.growth
    rows = [growth.rows[i] for i in keep] if growth.rows is not None else None
    out = ImprintedHead(head.proxies[mask], owner, head.norm_inf, head.agg, [head.class_names[i] for i in keep],
                        head.center, head.method)
    out.growth = GrowthState(growth.seed, [growth.labels[i] for i in keep] if growth.labels else None, rows,
                             growth.lam)
    return out
