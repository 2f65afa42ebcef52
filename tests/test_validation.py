"""The validation protocol: a stratified, seeded split held out of each task's training rows, recorded in the
rows, part of the run hash, and without it (val_fraction = 0) everything exactly as before."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from test_cli import results, run_cli

from imprint_bench.data.holdout import Holdout
from imprint_bench.data.tasks import make_task
from imprint_bench.errors import ConfigError
from imprint_bench.imprint.pipeline import Workspace
from imprint_bench.imprint.spec import PRESETS
from imprint_bench.plan import FeatureIdentity, make_cell


def _rows(x: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(r) for r in x.tolist()}


def test_the_split_is_stratified_disjoint_and_reproducible_per_seed(mixture):
    task = make_task(mixture, "all", None, seed=3, holdout=Holdout(0.25))
    per_class = torch.bincount(mixture.y_train)
    assert torch.equal(torch.bincount(task.y_val), (per_class.float() * 0.25).round().long())
    for i, label in enumerate(task.labels):
        held = _rows(task.x_val[task.y_val == i])
        kept = _rows(task.train[i])
        assert not held & kept and held | kept == _rows(mixture.x_train[mixture.y_train == label])
    assert not _rows(task.x_val) & _rows(mixture.x_test)
    again = make_task(mixture, "all", None, seed=3, holdout=Holdout(0.25))
    other = make_task(mixture, "all", None, seed=4, holdout=Holdout(0.25))
    assert torch.equal(again.x_val, task.x_val) and not torch.equal(other.x_val, task.x_val)
    few = make_task(mixture, "all", None, shots=5, seed=3, holdout=Holdout(per_class=10))
    assert torch.equal(torch.bincount(few.y_val), torch.full((10,), 10)) and all(len(x) == 5 for x in few.train)
    assert not _rows(few.x_val) & set().union(*(_rows(x) for x in few.train))


def test_validation_accuracy_does_not_depend_on_method_order(mixture):
    methods = [PRESETS[name] for name in ("qi", "ours", "janson", "oracle")]

    def scores(order):
        workspace = Workspace(make_task(mixture, "all", None, seed=1, holdout=Holdout(0.2)), seed=1)
        return {repr(spec): workspace.evaluate(spec.canonical())["val_acc"] for spec in order}

    forward, backward = scores(methods), scores(methods[::-1])
    assert forward == backward and all(0 < v <= 100 for v in forward.values())


def test_without_a_split_tasks_rows_and_hashes_are_unchanged(mixture):
    plain, zero = make_task(mixture, "all", None, seed=1), make_task(mixture, "all", None, seed=1, holdout=Holdout(0))
    assert zero.n_val == 0 and all(torch.equal(a, b) for a, b in zip(plain.train, zero.train, strict=True))
    spec = PRESETS["ours"].canonical()
    assert Workspace(plain, 1).evaluate(spec)["acc"] == Workspace(zero, 1).evaluate(spec)["acc"]
    features = FeatureIdentity("b", "d", "none", {"features": "x"})
    before = make_cell(features, {"name": "all", "classes": None, "shots": -1}, 1)
    assert make_cell(features, {"name": "all", "classes": None, "shots": -1, "val_fraction": 0.0,
                                "val_per_class": None}, 1).hash == before.hash
    assert make_cell(features, {"name": "all", "val_fraction": 0.2}, 1).hash != before.hash


@pytest.mark.parametrize(("holdout", "message"), [
    ({"fraction": 1.5}, "task.val_fraction must be a number in [0, 1)"),
    ({"per_class": 0}, "task.val_per_class must be null or an integer >= 1"),
    ({"fraction": 0.2, "per_class": 3}, "not both"),
])
def test_bad_holdouts_are_refused(holdout, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        Holdout(**holdout)


def test_a_class_left_without_training_rows_is_refused(mixture):
    with pytest.raises(ConfigError, match="leaves none to imprint from"):
        make_task(mixture, "all", None, holdout=Holdout(per_class=10_000))


def test_rows_record_validation_accuracy_and_sizes(tmp_path, npz_file):
    features = ("dataset=features", f"dataset.path={npz_file}", "task=even")
    assert run_cli(tmp_path, *features, "method=qi").returncode == 0
    held = run_cli(tmp_path, *features, "method=qi", "task.val_fraction=0.2")
    assert held.returncode == 0, held.stderr
    df = results(tmp_path).sort_values("n_val")
    without, held_out = df.iloc[0], df.iloc[1]
    assert without.n_val == 0 and held_out.n_val > 0 and held_out.n_val + held_out.n_train == without.n_train
    assert pd.isna(without.val_acc) and 0 < held_out.val_acc <= 100 and without.run_hash != held_out.run_hash
    bad = run_cli(tmp_path, *features, "task.val_fraction=2")
    assert bad.returncode == 2 and "task.val_fraction must be a number in [0, 1)" in bad.stderr
