"""Sweep planning: jobs grouped by feature set, each distinct configuration composed once, same cells as Hydra."""

from __future__ import annotations

import pytest
from conftest import own_cell
from hydra.core.override_parser.overrides_parser import OverridesParser

from imprint_bench.errors import ConfigError
from imprint_bench.plan import job_cells, plan_job
from imprint_bench.sweep import Composer, expand, group_jobs, override_value, plan_groups

GROUPS = {"backbone", "dataset", "task", "norm", "gen", "agg", "method", "tracker", "extract", "experiment", "paths"}


def jobs_of(*args: str) -> list[list[str]]:
    return expand(OverridesParser.create().parse_overrides(list(args)))


def counting(compose_cfg):
    calls: list[list[str]] = []

    def compose(overrides: list[str]):
        calls.append(list(overrides))
        return compose_cfg(*overrides)

    return compose, calls


def test_tasks_and_seeds_are_cells_of_one_job_per_feature_set():
    groups = group_jobs(jobs_of("dataset=features", "dataset.path=a.npz,b.npz", "task=all,even", "seed=1,2,3",
                                "task.shots=-1,5"))
    assert [g.overrides for g in groups] == [["dataset=features", "dataset.path=a.npz"],
                                            ["dataset=features", "dataset.path=b.npz"]]
    assert len(groups[0].cells) == 2 * 3 * 2
    assert groups[0].cells[0] == ["task=all", "seed=1", "task.shots=-1"]


def test_override_values_round_trip_through_hydra():
    node = {"task": {"name": "it's", "classes": [0, 2], "shots": -1, "on": True, "none": None}, "seed": 7}
    parsed = OverridesParser.create().parse_overrides([f"cells=[{override_value(node)}]"])[0]
    assert parsed.value() == [node]


def test_composer_matches_a_full_composition_with_one_composition_per_group_selection(compose_cfg, npz_file):
    compose, calls = counting(compose_cfg)
    composer = Composer(compose, lambda key: key in GROUPS)
    overrides = ["dataset=features", f"dataset.path={npz_file}", "grid={method:[qi,ours]}", "task=even", "seed=3"]
    for path in ("a.npz", "b.npz", str(npz_file)):
        got = composer([*overrides[:1], f"dataset.path={path}", *overrides[2:]])
        assert got == compose_cfg(*overrides[:1], f"dataset.path={path}", *overrides[2:])
    assert len(calls) == 1  # three jobs, one selection of config groups
    assert composer(["+extra=1"]).extra == 1  # anything but key=value is composed in full


def test_plan_groups_composes_each_distinct_configuration_once(compose_cfg, npz_file):
    compose, calls = counting(compose_cfg)
    groups = group_jobs(jobs_of("dataset=features", f"dataset.path={npz_file}", "method=qi,ours",
                                "task=all,even,odd,short", "seed=1,2,3"))
    plan_groups(groups, Composer(compose, lambda key: key in GROUPS))
    assert len(groups) == 2 and [len(g.planned) for g in groups] == [12, 12]
    assert len(calls) == 2 + 4  # one per job, and each task once for all jobs
    for group in groups:  # each cell equals what Hydra composes for that job alone
        for cell_overrides, planned in zip(group.cells, group.planned, strict=True):
            cell, plan = own_cell(plan_job(compose_cfg(*group.overrides, *cell_overrides)))
            assert (planned.cell.hash, planned.plan.specs) == (cell.hash, plan.specs)


def test_a_group_whose_overrides_change_the_task_composes_its_own_tasks(compose_cfg, npz_file):
    groups = group_jobs(jobs_of("dataset=features", f"dataset.path={npz_file}", "task.shots=-1", "method=qi",
                                "task=all,short", "experiment=fewshot,quickstart"))
    plan_groups(groups, lambda o: compose_cfg(*o))
    for group in groups:
        for cell_overrides, planned in zip(group.cells, group.planned, strict=True):
            assert planned.cell.hash == plan_job(compose_cfg(*group.overrides, *cell_overrides)).cells[0].cell.hash


def test_a_bad_cell_names_its_job(compose_cfg, npz_file):
    groups = group_jobs(jobs_of("dataset=features", f"dataset.path={npz_file}", "seed=1,abc"))
    with pytest.raises(ConfigError, match=r"job dataset=features .*: seed must be an integer, got 'abc'"):
        plan_groups(groups, lambda o: compose_cfg(*o))


def test_job_overrides_carry_every_cell(compose_cfg, npz_file):
    groups = group_jobs(jobs_of("dataset=features", f"dataset.path={npz_file}", "method=qi", "task=all,short",
                                "seed=1,2"))
    plan_groups(groups, lambda o: compose_cfg(*o))
    cfg = compose_cfg(*groups[0].job_overrides())
    assert [(t["name"], t["classes"], seed) for t, seed in job_cells(cfg)] == [
        ("all", None, 1), ("all", None, 2), ("short", [0, 1, 2], 1), ("short", [0, 1, 2], 2)]
    single = group_jobs(jobs_of("dataset=features", f"dataset.path={npz_file}", "method=qi"))
    plan_groups(single, lambda o: compose_cfg(*o))
    assert not any(o.startswith("cells=") for o in single[0].job_overrides())
    with pytest.raises(ConfigError, match="cells must be"):
        job_cells(compose_cfg("cells={pairs:[[3,1]]}"))


def test_task_nodes_composed_on_their_own_plan_the_same_cells(compose_cfg, npz_file):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from imprint_bench.config import CONFIG_MODULE

    batches: list[list[tuple[str, ...]]] = []

    def compose_tasks(task_overrides: list[tuple[str, ...]]):  # as the sweeper does: one composition for all
        batches.append(task_overrides)
        overrides = [o.replace("task=", f"+task@task_{i}=") if o.startswith("task=")
                     else o.replace("task.", f"task_{i}.") for i, split in enumerate(task_overrides) for o in split]
        GlobalHydra.instance().clear()
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            cfg = hydra_compose(overrides=overrides)
        return [cfg[f"task_{i}"] for i in range(len(task_overrides))]

    for extra in ((), ("experiment=beyond_ours",)):  # beyond_ours sets task fields: tasks are composed in full
        compose, calls = counting(compose_cfg)
        batches.clear()
        groups = group_jobs(jobs_of("dataset=features", f"dataset.path={npz_file}", *extra, "method=qi,ours",
                                    "task=all,even,odd", "task.shots=-1", "seed=1,2"))
        plan_groups(groups, Composer(compose, lambda key: key in GROUPS), compose_tasks)
        assert len(batches) == 1 and len(batches[0]) == 3  # the three tasks, in one composition
        assert len(calls) == (2 if not extra else 2 + 3)
        for group in groups:
            for cell_overrides, planned in zip(group.cells, group.planned, strict=True):
                cell, plan = own_cell(plan_job(compose_cfg(*group.overrides, *cell_overrides)))
                assert (planned.cell.hash, planned.plan.specs) == (cell.hash, plan.specs)


def test_tasks_that_cannot_be_composed_together_are_composed_one_by_one(compose_cfg, npz_file):
    def compose_tasks(task_overrides: list[tuple[str, ...]]):
        if len(task_overrides) > 1 or task_overrides[0] == ("task=nosuchtask",):
            raise ValueError("cannot compose")
        return [compose_cfg(*task_overrides[0]).task]

    groups = group_jobs(jobs_of("dataset=features", f"dataset.path={npz_file}", "method=qi", "task=all,even",
                                "seed=1"))
    plan_groups(groups, Composer(lambda o: compose_cfg(*o), lambda key: key in GROUPS), compose_tasks)
    assert [p.cell.task for p in groups[0].planned] == ["all", "even"]
    groups = group_jobs(jobs_of("dataset=features", f"dataset.path={npz_file}", "method=qi", "task=all,nosuchtask",
                                "seed=1"))
    with pytest.raises(Exception, match="nosuchtask"):  # the whole composition says what is wrong
        plan_groups(groups, Composer(lambda o: compose_cfg(*o), lambda key: key in GROUPS), compose_tasks)


def test_the_master_config_stands_in_for_a_job_that_selects_its_groups(compose_cfg, npz_file):
    from omegaconf import open_dict

    def job_part(cfg):
        with open_dict(cfg):
            del cfg["hydra"]
        return cfg

    compose, calls = counting(lambda *o: compose_cfg(*o, return_hydra_config=True))
    master = compose_cfg("dataset=features", "grid={method:[qi,ours]}", return_hydra_config=True)
    master.hydra.overrides.task = ["dataset=features", "dataset.path=a.npz,b.npz", "grid={method:[qi,ours]}",
                                   "task=all,even", "seed=1,2"]  # as Hydra composes it: sweeps not applied
    composer = Composer(compose, lambda key: key in GROUPS, master=master)
    job = ["dataset=features", f"dataset.path={npz_file}", "grid={method:[qi,ours]}", "task=all", "seed=2"]
    assert job_part(composer(job)) == compose_cfg(*job) and not calls  # the master, with the job's values
    other = [*job[:3], "task=even", "seed=2"]  # another task option than the master's: composed
    assert job_part(composer(other)) == compose_cfg(*other) and len(calls) == 1
    overlapping = [*job[:3], "grid.method=[qi]", "task=all"]  # a value inside one the master set: composed
    assert job_part(composer(overlapping)) == compose_cfg(*overlapping) and len(calls) == 2
    without = ["grid={method:[qi,ours]}", "task=all"]  # does not select the master's dataset option: composed
    assert job_part(composer(without)) == compose_cfg(*without) and len(calls) == 3
