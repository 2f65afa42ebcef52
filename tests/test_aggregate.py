"""AGG: max on a hand example; mNN agrees with a brute-force computation for every distance and weighting."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from imprint_bench.errors import ConfigError
from imprint_bench.imprint.aggregate import class_scores, max_scores
from imprint_bench.imprint.metrics import classification_metrics
from imprint_bench.imprint.spec import AggSpec


def test_max_takes_best_proxy_per_class_and_ties_go_low():
    proxies = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.6]])
    owner = torch.tensor([0, 0, 1])
    x = torch.tensor([[0.0, 2.0], [1.0, 1.0], [-1.0, -1.0]])
    scores = max_scores(x, proxies, owner, 2)
    assert torch.allclose(scores, torch.tensor([[2.0, 1.2], [1.0, 1.2], [-1.0, -1.2]]))
    tie = max_scores(torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]), 2)
    assert int(tie.argmax(1)) == 0  # equal scores: the lowest class index wins


def brute_force_mnn(x, proxies, owner, n_classes, m, metric, weighting):
    x64, p64 = x.double().numpy(), proxies.double().numpy()
    if metric == "mahalanobis":
        vi = np.linalg.inv(np.cov(p64.T) + 1e-6 * np.eye(p64.shape[1]))
        d = cdist(x64, p64, "mahalanobis", VI=vi)
    else:
        d = cdist(x64, p64, {"manhattan": "cityblock"}.get(metric, metric))
    preds = []
    m = min(m, len(p64))
    for row in d:
        nearest = np.argsort(row, kind="stable")[:m]
        w = np.ones(m) if weighting == "uniform" else 1.0 / (row[nearest] + 1e-10)
        votes = np.bincount(owner.numpy()[nearest], weights=w, minlength=n_classes)
        preds.append(int(np.argmax(votes)))
    return np.array(preds)


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "manhattan", "chebyshev", "mahalanobis"])
@pytest.mark.parametrize("weighting", ["uniform", "distance"])
@pytest.mark.parametrize("m", [1, 3, 7])
def test_mnn_matches_brute_force(metric, weighting, m):
    g = torch.Generator().manual_seed(m)
    proxies = torch.randn(24, 6, generator=g, dtype=torch.float64).float()
    owner = torch.arange(4).repeat_interleave(6)
    x = torch.randn(50, 6, generator=g, dtype=torch.float64).float()
    pred = class_scores(x, proxies, owner, 4, AggSpec("mnn", m, metric, weighting)).argmax(1).numpy()
    expected = brute_force_mnn(x, proxies, owner, 4, m, metric, weighting)
    assert (pred == expected).mean() >= 0.98  # float32 vs float64 near-ties may flip a rare row


def test_m_is_clipped_and_uniform_ties_go_to_class_zero():
    proxies = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    owner = torch.tensor([0, 0, 1, 1])
    scores = class_scores(torch.tensor([[2.9]]), proxies, owner, 2, AggSpec("mnn", 50, "euclidean", "uniform"))
    assert scores.tolist() == [[2.0, 2.0]] and int(scores.argmax(1)) == 0  # every proxy votes: a tie


def test_mahalanobis_needs_two_proxies():
    with pytest.raises(ConfigError, match="at least 2 proxies"):
        class_scores(torch.zeros(1, 3), torch.zeros(1, 3), torch.tensor([0]), 1, AggSpec("mnn", 1, "mahalanobis"))


def test_metrics_against_sklearn():
    from sklearn.metrics import balanced_accuracy_score, f1_score

    target = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 2, 0, 3])
    m = classification_metrics(pred, target, 4)
    assert m["acc"] == pytest.approx(100 * 4 / 7)
    assert m["per_class_f1"] == pytest.approx(100 * f1_score(target, pred, average=None, labels=[0, 1, 2, 3]))
    assert m["macro_f1"] == pytest.approx(100 * f1_score(target, pred, average="macro", labels=[0, 1, 2]))
    assert m["balanced_acc"] == pytest.approx(100 * balanced_accuracy_score(target, pred))
