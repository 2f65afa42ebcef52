"""Multirun planning: group a sweep's jobs by feature set, validate and count them before anything runs.

A Hydra multirun such as ``-m dataset.path=a.npz,b.npz task=all,even seed=1,2`` names 8 cells. Tasks and
seeds are *cell axes*: cells that differ only there share a feature set, so they run as one job (here 2
jobs of 4 cells), which loads the features once and shares proxies, Gram matrices and neighbour searches.
Every distinct configuration is composed once (each job's config, and each distinct task), through the
config loader Hydra gives its sweepers; a bad value anywhere fails the sweep before the first job starts.

The ``imprint`` sweeper plugin (``hydra_plugins/imprint_bench_sweeper``) drives this module.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from imprint_bench.errors import ConfigError
from imprint_bench.plan import PlannedCell, describe_cells, plan_cells

#: Override keys that select a cell within a feature set (a job runs all of its cells).
CELL_KEYS = ("task", "seed")

Compose = Callable[[list[str]], DictConfig]
#: Task nodes composed on their own, one per set of task overrides (``("task=even", "task.shots=5")``).
ComposeTasks = Callable[[list[tuple[str, ...]]], list[DictConfig]]


class Composer:
    """Composes job configs the way Hydra does, with one composition per distinct selection of config groups.

    Hydra builds a config from the group overrides (``backbone=resnet18``) and then applies the value
    overrides (``dataset.path=a.npz``) in order; so jobs that differ only in values share a composition,
    and their values are applied to a copy. Anything but a plain ``key=value`` is composed in full.

    ``master`` (Hydra's composition of the command line, sweeps left out) stands in for the composition of a
    job that selects the same config groups, so that a sweep over values composes nothing more (see
    :meth:`_from_master`)."""

    def __init__(self, compose: Compose, is_group: Callable[[str], bool], master: DictConfig | None = None) -> None:
        self.compose = compose
        self.is_group = is_group
        self.parser = OverridesParser.create()
        self._by_groups: dict[tuple[str, ...], DictConfig] = {}
        self.master = master
        given = [o for o in self.parser.parse_overrides(list(master.hydra.overrides.task))
                 if not o.is_sweep_override()] if master is not None else []
        self._master_groups = {o.input_line for o in given if is_group(o.key_or_group)}
        self._master_values = [o for o in given if not is_group(o.key_or_group)]

    def __call__(self, overrides: list[str], parsed: list[Override] | None = None) -> DictConfig:
        """The config of a job with these overrides (``parsed``: the same, already parsed)."""
        parsed = parsed if parsed is not None else self.parser.parse_overrides(list(overrides))
        groups = [o for o in parsed if self.is_group(o.key_or_group)]
        values = [o for o in parsed if not self.is_group(o.key_or_group)]
        if any(o.is_delete() or o.is_add() or o.is_force_add() or o.package is not None for o in values):
            return self.compose(list(overrides))
        base = self._from_master(groups, values)
        if base is None:
            key = tuple(str(o.input_line) for o in groups)
            if key not in self._by_groups:
                self._by_groups[key] = self.compose(list(key))
            base = self._by_groups[key]
        cfg = base.copy()
        try:
            for o in values:
                OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
        except OmegaConfBaseException:
            return self.compose(list(overrides))  # Hydra's own message for a key that does not exist
        return cfg

    def _from_master(self, groups: list[Override], values: list[Override]) -> DictConfig | None:
        """The master config, when it is what composing the job's groups and applying its values would start from:
        the job selects every config group the command line selects, and each of its group options is the one
        the master shows (a swept option that is the default, ``task=all``, selects nothing new); its values that
        the master has not applied touch other keys than those the master's values set (so order cannot matter,
        and the master's own values, applied once more, change nothing). Otherwise None."""
        master = self.master
        if master is None:
            return None
        choices = master.hydra.runtime.choices
        if "???" in choices.values() or not self._master_groups <= {o.input_line for o in groups}:
            return None
        if any(o.is_delete() or o.is_add() or o.is_force_add() or o.package is not None
               or choices.get(o.key_or_group) != o.value() for o in groups):
            return None
        applied = {o.input_line for o in self._master_values}
        keys = [o.key_or_group for o in self._master_values]
        if any(o.input_line not in applied and any(_overlap(o.key_or_group, k) for k in keys) for o in values):
            return None
        return master


def _overlap(a: str, b: str) -> bool:
    """Whether two dotted keys name the same node or one holds the other (``grid`` and ``grid.method``)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def is_cell_key(key: str) -> bool:
    """``task``, ``task.<field>`` and ``seed`` (with or without a ``+``/``~`` prefix)."""
    key = key.lstrip("+~")
    return key in CELL_KEYS or key.startswith("task.")


@dataclass
class JobGroup:
    """One job of the sweep: the overrides it shares, and each of its cells' own overrides."""

    overrides: list[str]
    cells: list[list[str]] = field(default_factory=list)
    planned: list[PlannedCell] = field(default_factory=list)
    config: DictConfig | None = None  # the job's composed config (its first cell)

    @property
    def n_runs(self) -> int:
        return sum(p.n_runs for p in self.planned)

    def describe(self) -> str:
        """One line: ``efficientnet_lite0 / mnist5k: 4 tasks × 3 seeds, 60 runs`` (the launch log's job line)."""
        cells = [p.cell for p in self.planned]
        tasks = len({(c.task, c.shots, tuple(c.classes or ())) for c in cells})
        seeds = len({c.seed for c in cells})
        return (f"{cells[0].backbone} / {cells[0].dataset}: {tasks} task{'s' * (tasks != 1)} × {seeds} "
                f"seed{'s' * (seeds != 1)}, {self.n_runs} runs")

    def job_overrides(self) -> list[str]:
        """What the launcher gets: the shared overrides, the first cell's (so the job composes as it), and,
        when there is more than one cell, ``cells``: each distinct task node once, and (task index, seed) pairs."""
        if len(self.planned) == 1:
            return [*self.overrides, *self.cells[0]]
        tasks: list[dict] = []
        pairs = []
        for p in self.planned:
            node = p.task.node()
            if node not in tasks:
                tasks.append(node)
            pairs.append([tasks.index(node), p.cell.seed])
        cells = override_value({"tasks": tasks, "pairs": pairs})
        return [*self.overrides, *self.cells[0], f"cells={cells}"]


def override_value(value: Any) -> str:
    """``value`` written in Hydra's override grammar (dicts with identifier keys, lists, scalars)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def expand(overrides: Sequence[Override]) -> list[list[str]]:
    """Every job's override list (the cartesian product of discrete sweeps, in command-line order)."""
    axes: dict[str, list[str]] = {}
    for override in overrides:
        key = override.get_key_element()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise ConfigError(f"{key}: only comma-separated or choice(...) sweeps are supported here, "
                                  f"not {override.value_type.name if override.value_type else 'this sweep'}")
            axes[key] = [f"{key}={v}" for v in override.sweep_string_iterator()]
        else:
            axes[key] = [f"{key}={override.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*axes.values())]


def group_jobs(jobs: list[list[str]]) -> list[JobGroup]:
    """Jobs that differ only in cell axes become one group, in order of first appearance."""
    groups: dict[tuple[str, ...], JobGroup] = {}
    for job in jobs:
        shared = tuple(o for o in job if not is_cell_key(o.split("=", 1)[0]))
        group = groups.setdefault(shared, JobGroup(list(shared)))
        group.cells.append([o for o in job if is_cell_key(o.split("=", 1)[0])])
    return list(groups.values())


def plan_groups(groups: list[JobGroup], compose: Compose, compose_tasks: ComposeTasks | None = None) -> None:
    """Compose and plan every cell of every group (fills ``JobGroup.planned``); a ConfigError names the job.

    Each group is composed once, and each distinct set of task overrides once over the overrides all groups
    share; a group whose own composition shows a different task node (an experiment that sets task fields)
    has its other tasks composed with its own overrides. ``compose_tasks`` (optional) composes task nodes on their
    own, all in one composition, from overrides that select a task option (``task=even task.shots=5``), which is
    far cheaper than a whole config per task; they are used where the first cell's task node shows that nothing
    else sets task fields."""
    everywhere = set.intersection(*(set(g.overrides) for g in groups)) if groups else set()
    task_nodes: dict[tuple[str, ...], DictConfig] = {}
    shared = [o for o in groups[0].overrides if o in everywhere] if groups else []
    alone = _tasks_alone(groups, compose_tasks) if compose_tasks is not None else {}

    def task_node(task_overrides: tuple[str, ...], base: list[str]) -> DictConfig:
        key = (*base, "|", *task_overrides)
        if key not in task_nodes:
            node = alone.get(task_overrides) if base is shared else None
            task_nodes[key] = node if node is not None else compose([*base, *task_overrides]).task
        return task_nodes[key]

    for group in groups:
        try:
            first = compose([*group.overrides, *group.cells[0]])
            split = _task_overrides(group.cells[0])
            base = shared
            if alone and split in alone and first.task != alone[split]:
                alone.clear()  # something besides the task options sets task fields: compose tasks in full
                task_nodes.clear()
            if first.task != task_node(split, shared):
                base = list(group.overrides)
                task_nodes[(*base, "|", *split)] = first.task
            cells = [(task_node(_task_overrides(c), base), _seed_value(c, first)) for c in group.cells]
            group.planned = plan_cells(first, cells)
            group.config = first
        except ConfigError as err:
            raise ConfigError(f"job {' '.join(group.overrides) or '(no overrides)'}: {err}") from err


def _tasks_alone(groups: list[JobGroup], compose_tasks: ComposeTasks) -> dict[tuple[str, ...], DictConfig]:
    """Each distinct set of task overrides that selects a task option, composed on its own: all in one composition,
    or, when that fails (a bad option), one by one, leaving out those that fail (the whole composition of their job
    then says what is wrong, in Hydra's words)."""
    wanted = list(dict.fromkeys(split for g in groups for c in g.cells
                                if _selects_task(split := _task_overrides(c))))
    if not wanted:
        return {}
    try:
        return dict(zip(wanted, compose_tasks(wanted), strict=True))
    except Exception:
        alone = {}
        for split in wanted:
            with contextlib.suppress(Exception):
                alone[split] = compose_tasks([split])[0]
        return alone


def _selects_task(task_overrides: tuple[str, ...]) -> bool:
    """Whether the overrides choose a task option (``task=even``; not a deletion)."""
    return any(o.lstrip("+").split("=", 1)[0] == "task" for o in task_overrides)


def _task_overrides(cell_overrides: list[str]) -> tuple[str, ...]:
    return tuple(o for o in cell_overrides if not o.lstrip("+~").startswith("seed="))


def _seed_value(cell_overrides: list[str], composed: DictConfig) -> Any:
    for o in cell_overrides:
        if o.lstrip("+~").startswith("seed="):
            raw = o.split("=", 1)[1]
            try:
                return int(raw)
            except ValueError:
                return raw  # plan_cell rejects it with a clear message
    return composed.seed


def describe_plan(groups: list[JobGroup]) -> str:
    """One line per job, then the totals (what ``mode=plan`` prints)."""
    lines = []
    for i, group in enumerate(groups):
        label = " ".join(o for o in group.overrides if not o.startswith(("grid=", "mode=")))
        lines.append(f"  job {i} [{label or 'defaults'}]: {describe_cells([p.cell for p in group.planned])}, "
                     f"{group.n_runs} runs")
    planned = [p for g in groups for p in g.planned]
    pruned = sum(sum(p.plan.pruned.values()) for p in planned)
    dupes = sum(p.plan.n_duplicates for p in planned)
    lines.append(f"plan: {len(groups)} jobs, {len(planned)} cells, {sum(p.n_runs for p in planned)} runs "
                 f"({pruned} invalid combinations pruned, {dupes} duplicates merged; mNN runs with m above a "
                 "task's proxy count are pruned at run time)")
    return "\n".join(lines)
