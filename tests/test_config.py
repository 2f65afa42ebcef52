"""The Hydra config tree: presets compose to the engine's definitions, experiments override defaults."""

import pytest
from hydra.errors import ConfigCompositionException

from imprint_bench.imprint.spec import PRESETS
from imprint_bench.runner import method_from_cfg, plan_job


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_method_yaml_presets_equal_the_engine_presets(compose_cfg, name):
    cfg = compose_cfg(f"method={name}")
    assert method_from_cfg(cfg).canonical() == PRESETS[name].canonical()


def test_stage_overrides_win_over_a_preset(compose_cfg):
    spec = method_from_cfg(compose_cfg("method=ours", "gen.k=5", "agg=mnn", "agg.m=3"))
    assert spec.gen.k == 5 and spec.agg.name == "mnn" and spec.agg.m == 3 and spec.norm_pre == "l2"
    assert method_from_cfg(compose_cfg("method=ours", "gen=mean")).gen.name == "mean"


@pytest.mark.parametrize("experiment", ["quickstart", "table1", "table1_offline", "aggfixed", "aggfocus", "k_sweep",
                                        "fewshot", "combidigits", "imagenet_d_in_1"])
def test_experiments_compose_and_plan(compose_cfg, experiment):
    cfg = compose_cfg(f"experiment={experiment}", return_hydra_config=True)
    assert cfg.experiment_name == experiment and cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.hydra.sweeper.params
    _, plan = plan_job(cfg)
    assert plan.specs


def test_paper_grid_sizes(compose_cfg):
    assert len(plan_job(compose_cfg("experiment=table1"))[1].specs) == 5
    # aggfixed: 9 NORM triples × 32 GEN variants (reference: 288) + 6 kLS (kls k=1 is ls)
    assert len(plan_job(compose_cfg("experiment=aggfixed"))[1].specs) == 288 + 6


def test_unknown_group_option_lists_choices(compose_cfg):
    with pytest.raises(ConfigCompositionException, match="Could not find 'backbone/resnet19'"):
        compose_cfg("backbone=resnet19")
