"""Tuning with Optuna (hparams_search=imprint_optuna): trials maximise validation accuracy, never test accuracy."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from test_cli import results, run_cli

pytestmark = pytest.mark.slow
STUDY = ("hparams_search=imprint_optuna", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=4", "nc1=false",
         "dataset=features", "task=even")


def test_a_small_study_maximises_validation_accuracy(tmp_path, npz_file):
    out = run_cli(tmp_path, *STUDY, f"dataset.path={npz_file}")
    assert out.returncode == 0, out.stderr
    rows = results(tmp_path, "hparams_search")
    assert len(rows) >= 1 and rows["val_acc"].notna().all() and (rows["n_val"] > 0).all()
    study = next((tmp_path / "outputs" / "logs" / "multiruns").glob("*/optimization_results.yaml"))
    best = yaml.safe_load(study.read_text())["best_value"]
    assert best == pytest.approx(rows["val_acc"].max())  # the objective is validation accuracy
    chosen = rows.sort_values("created_at").loc[rows["val_acc"].idxmax()]
    assert f"test acc {chosen['acc']:.2f} %" in out.stdout and "selected on val_acc" in out.stdout


@pytest.mark.parametrize(("extra", "message"), [
    (("task.val_fraction=0",), "optimized_metric=val_acc needs a validation split"),
    (("optimized_metric=acc",), "optimized_metric must be val_acc"),
])
def test_a_study_without_validation_data_is_refused(tmp_path, npz_file, extra, message):
    out = run_cli(tmp_path, *STUDY, f"dataset.path={npz_file}", *extra)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "outputs" / "results" / "hparams_search" / "results.parquet").exists() or pd.read_parquet(
        tmp_path / "outputs" / "results" / "hparams_search" / "results.parquet").empty


def test_the_preset_says_which_sweeper_it_needs(tmp_path, npz_file):
    out = run_cli(tmp_path, *[a for a in STUDY if a != "hydra/sweeper=optuna"], f"dataset.path={npz_file}")
    assert out.returncode == 2 and "hydra/sweeper=optuna" in out.stderr and "Traceback" not in out.stderr


def test_an_impossible_trial_fails_alone_and_the_study_goes_on(tmp_path, npz_file):
    """On a 3-class task the shipped space draws m-NN with m above the task's proxies (every configuration
    pruned): such a trial is recorded as failed and the study runs all its trials (here m-NN in every trial)."""
    out = run_cli(tmp_path, *[a for a in STUDY if a != "task=even"], "task=short", "hydra.sweeper.n_trials=14",
                  "~hydra.sweeper.params.agg", "agg=mnn", "agg.distance=cosine", f"dataset.path={npz_file}")
    assert out.returncode == 0, out.stderr
    assert "Failed experiment: task 'short' has 3 classes: every configuration is pruned" in out.stderr + out.stdout
    failed = (out.stderr + out.stdout).count("Failed experiment:")
    assert failed >= 1 and 1 <= len(results(tmp_path, "hparams_search")) <= 14 - failed  # repeats share a run
    assert "Traceback" not in out.stderr


def test_a_study_resumes_from_sqlite_storage(tmp_path, npz_file):
    """hydra.sweeper.storage=sqlite:///...: a second command adds its trials to the same study."""
    import optuna

    storage = f"sqlite:///{tmp_path}/study.db"
    for _ in range(2):
        out = run_cli(tmp_path, *STUDY, f"dataset.path={npz_file}", "hydra.sweeper.n_trials=2",
                      f"hydra.sweeper.storage={storage}")
        assert out.returncode == 0, out.stderr
    study = optuna.load_study(study_name="hparams_search", storage=storage)
    assert len(study.trials) == 4 and study.best_value == pytest.approx(results(tmp_path, "hparams_search")["val_acc"]
                                                                        .max())
