"""The Hydra config tree: presets compose to the engine's definitions, experiments override defaults."""

import pytest
from conftest import own_cell
from hydra.errors import ConfigCompositionException

from imprint_bench.errors import ConfigError
from imprint_bench.imprint.spec import PRESETS
from imprint_bench.plan import base_method, plan_job


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_method_yaml_presets_equal_the_engine_presets(compose_cfg, name):
    cfg = compose_cfg(f"method={name}")
    assert base_method(cfg).canonical() == PRESETS[name].canonical()


def test_stage_overrides_win_over_a_preset(compose_cfg):
    spec = base_method(compose_cfg("method=ours", "gen.k=5", "agg=mnn", "agg.m=3"))
    assert spec.gen.k == 5 and spec.agg.name == "mnn" and spec.agg.m == 3 and spec.norm_pre == "l2"
    assert base_method(compose_cfg("method=ours", "gen=mean")).gen.name == "mean"


@pytest.mark.parametrize("experiment", ["quickstart", "table1", "table1_offline", "aggfixed", "aggfocus", "k_sweep",
                                        "fewshot", "combidigits", "imagenet_d_in_1"])
def test_experiments_compose_and_plan(compose_cfg, experiment):
    cfg = compose_cfg(f"experiment={experiment}", return_hydra_config=True)
    assert cfg.experiment_name == experiment and cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.hydra.sweeper.params
    _, plan = own_cell(plan_job(cfg))
    assert plan.specs


def test_paper_grid_sizes(compose_cfg):
    assert len(plan_job(compose_cfg("experiment=table1")).cells[0].plan.specs) == 5
    # aggfixed: 9 NORM triples × 32 GEN variants (reference: 288) + 6 kLS (kls k=1 is ls)
    assert len(plan_job(compose_cfg("experiment=aggfixed")).cells[0].plan.specs) == 288 + 6


def test_unknown_group_option_lists_choices(compose_cfg):
    with pytest.raises(ConfigCompositionException, match="Could not find 'backbone/resnet19'"):
        compose_cfg("backbone=resnet19")


def test_run_hash_follows_what_changes_the_numbers(compose_cfg, npz_file):
    def oracle_hash(*overrides):
        job = plan_job(compose_cfg("dataset=features", f"dataset.path={npz_file}", "method=oracle", *overrides))
        cell, plan = own_cell(job)
        return cell.run_hash(plan.specs[0]), plan.specs[0].gen.lam

    base, lam = oracle_hash()
    assert lam == 1e-4  # the dataset's ls_lambda: a backbone config does not apply to precomputed features
    assert oracle_hash("backbone=vit_b_16")[0] == base
    assert oracle_hash("dataset.ls_lambda=0.1")[0] != base
    assert oracle_hash("gen.lam=0.1")[0] == oracle_hash("dataset.ls_lambda=0.1")[0]  # same λ, same run
    npz_file.touch()
    import os

    os.utime(npz_file, ns=(1, 1))
    assert oracle_hash()[0] != base  # a changed file is a new identity
    image = plan_job(compose_cfg("dataset=mnist5k", "backbone=resnet18", "method=qi")).cells[0].cell
    amp = plan_job(compose_cfg("dataset=mnist5k", "backbone=resnet18", "method=qi", "extract.amp=true")).cells[0].cell
    assert image.hash != amp.hash


def test_the_slurm_preset_requeues_and_names_its_jobs(compose_cfg):
    cfg = compose_cfg("experiment_name=table1", "hydra/launcher=slurm", return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher.max_num_timeout >= 1 and launcher.stderr_to_stdout
    assert launcher.name == "imprint-table1" and "export HF_HUB_OFFLINE=1" in launcher.setup
    assert "%j" not in launcher.submitit_folder


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("gen.kmeans_iters=abc", "Value 'abc' of type 'str' could not be converted to Integer"),
        ("gen.kk=3", "Key 'kk' not in 'GenConfig'"),
        ("task.shots=five", "could not be converted to Integer"),
        ("dataset.subset.train=half", "could not be converted to Integer"),
        ("backbone.weights=IMAGENET1K_V2", "Key 'weights' not in 'CheckpointBackboneConfig'"),
        ("extract.amp=maybe", "Value 'maybe' is not a valid bool"),
    ],
)
def test_schemas_reject_bad_types_and_keys_at_compose(compose_cfg, override, message):
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg(override)
    assert message in str(err.value.__cause__ or err.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("gen.name=kmeanz", "unknown GEN method 'kmeanz' (gen.name); registered: all, mean, random, kmeans"),
        ("agg.distance=cosin", "unknown AGG distance 'cosin' (agg.distance); registered: inner_product, cosine"),
        ("norm.post=cl2n", "NORM kind 'cl2n' cannot be used as norm.post; valid there: none, l2, quantile"),
        ("gen.k=true", "gen.k must be a positive integer"),
        ("gen.lam=nan", "gen.lam must be a finite number"),
    ],
)
def test_stage_names_are_checked_against_the_registries_when_planning(compose_cfg, override, message):
    with pytest.raises(ConfigError) as err:
        plan_job(compose_cfg("dataset=synthetic", override))
    assert message in str(err.value)


@pytest.mark.parametrize("group", ["gen", "agg", "norm", "task", "extract", "paths", "tracker", "backbone", "dataset"])
def test_every_group_file_starts_from_a_typed_base_and_states_only_its_differences(group):
    import yaml

    from imprint_bench.config import config_dir
    from imprint_bench.config_schema import SCHEMAS

    bases = {name: node for g, name, node in SCHEMAS if g == group}
    for path in sorted((config_dir() / group).glob("*.yaml")):
        if (group, path.stem) == ("gen", "custom"):  # an external function's node: no schema, its keys are its own
            continue
        doc = yaml.safe_load(path.read_text())
        parent = doc["defaults"][0].split("/")[-1].removesuffix("@_here_")  # /schema/<group>/<base>@_here_
        if parent not in bases:  # a file that extends another member of the group (fashion_mnist_6k)
            assert (config_dir() / group / f"{parent}.yaml").is_file(), path
            continue
        defaults = bases[parent]()
        repeated = [key for key, value in doc.items() if key not in ("defaults", "name", "kind", "source")
                    and not isinstance(value, dict) and getattr(defaults, key, object()) == value]
        assert not repeated, f"{path.name} repeats its base's defaults: {repeated}"


def test_the_readme_site_launcher_recipe_composes_and_plans(tmp_path):
    """README, SLURM: a launcher file of the site's, starting from the preset, given with --config-dir."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    site = tmp_path / "site" / "hydra" / "launcher"
    site.mkdir(parents=True)
    (site / "mysite.yaml").write_text("defaults:\n  - slurm\npartition: gpu\nadditional_parameters: {account: me}\n")
    env = {**os.environ, "IMPRINT_BENCH_ROOT": str(tmp_path)}
    base = [sys.executable, "-m", "imprint_bench", "--config-dir", str(tmp_path / "site")]
    root = Path(__file__).resolve().parent.parent
    shown = subprocess.run([*base, "hydra/launcher=mysite", "--cfg", "hydra", "-p", "hydra.launcher"], cwd=root,
                           env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "partition: gpu" in shown.stdout and "account: me" in shown.stdout and "max_num_timeout: 3" in shown.stdout
    plan = subprocess.run([*base, "-m", "hydra/launcher=mysite", "dataset=synthetic", "seed=1,2", "mode=plan"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert plan.returncode == 0 and "plan: 1 jobs, 2 cells, 2 runs" in plan.stdout, plan.stderr
