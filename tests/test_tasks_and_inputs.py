"""Tasks (class subsets, renumbering, few-shot) and bring-your-own-embeddings input validation."""

import numpy as np
import pytest
import torch

from imprint_bench.data.base import FeatureSet
from imprint_bench.data.npz import load_npz_features
from imprint_bench.data.tasks import make_task
from imprint_bench.errors import ConfigError


def test_task_restricts_and_renumbers(mixture):
    task = make_task(mixture, "even", [0, 2, 4, 6, 8])
    assert task.labels == [0, 2, 4, 6, 8] and task.n_classes == 5
    assert set(task.y_test.tolist()) == set(range(5))
    assert task.y_test.numel() == int(torch.isin(mixture.y_test, torch.tensor([0, 2, 4, 6, 8])).sum())
    assert torch.equal(task.train[1], mixture.x_train[mixture.y_train == 2])
    assert task.class_names[1] == "class_2"


def test_few_shot_samples_are_paired_and_seeded(mixture):
    a = make_task(mixture, "all", None, shots=5, seed=1)
    b = make_task(mixture, "all", None, shots=5, seed=1)
    c = make_task(mixture, "all", None, shots=5, seed=2)
    assert all(x.shape[0] == 5 for x in a.train)
    assert all(torch.equal(x, y) for x, y in zip(a.train, b.train, strict=True))
    assert not torch.equal(a.train[0], c.train[0])
    assert torch.equal(make_task(mixture, "short", [0, 1, 2], shots=5, seed=1).train[1], a.train[1])


def test_task_errors(mixture):
    with pytest.raises(ConfigError, match=r"classes \[42\] have no training samples"):
        make_task(mixture, "bad", [0, 42])
    with pytest.raises(ConfigError, match="task.shots must be -1"):
        make_task(mixture, "all", None, shots=0)


def test_npz_loads(npz_file):
    fs = load_npz_features(npz_file)
    assert fs.x_train.dtype == torch.float32 and fs.class_names[3] == "c3" and fs.key.startswith("npz-")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("y_test"), r"lacks keys \['y_test'\]"),
        (lambda d: d.__setitem__("X_test", d["X_test"][:, :5]), "X_train has dim 32 but X_test has dim 5"),
        (lambda d: d.__setitem__("y_train", d["y_train"][:-3]), "one label per row"),
        (lambda d: d["X_train"].__setitem__((2, 2), np.nan), "NaN or Inf values in 1 rows"),
        (lambda d: d.__setitem__("y_train", d["y_train"] + 0.5), "integer class labels"),
    ],
)
def test_npz_bad_input_names_file_and_problem(tmp_path, npz_file, mutate, message):
    data = dict(np.load(npz_file))
    mutate(data)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **data)
    with pytest.raises(ConfigError, match=message) as err:
        load_npz_features(bad)
    assert "bad.npz" in str(err.value) or "feature set" not in str(err.value)


def test_missing_npz_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_npz_features(tmp_path / "nope.npz")


def test_featureset_validation_messages():
    with pytest.raises(ConfigError, match="must be 2-D"):
        FeatureSet(torch.zeros(3), torch.zeros(3), torch.zeros(2, 2), torch.zeros(2), source="s")
