"""Metrics from predictions: accuracy, macro-F1, per-class F1 (one-vs-rest), balanced accuracy (all in %)."""

from __future__ import annotations

import torch


def classification_metrics(pred: torch.Tensor, target: torch.Tensor, n_classes: int) -> dict[str, object]:
    """Metrics over the task's test set. Precision/recall are 0 where undefined (as the reference);
    macro-F1 and balanced accuracy average over classes present in the test set."""
    pred, target = pred.to("cpu", torch.int64), target.to("cpu", torch.int64)
    conf = torch.bincount(target * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    conf = conf.to(torch.float64)
    tp = conf.diag()
    support = conf.sum(1)
    predicted = conf.sum(0)
    precision = torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.zeros_like(tp))
    recall = torch.where(support > 0, tp / support.clamp_min(1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp_min(1e-300), torch.zeros_like(tp))
    present = support > 0
    return {
        "acc": 100.0 * float(tp.sum() / conf.sum()),
        "macro_f1": 100.0 * float(f1[present].mean()),
        "balanced_acc": 100.0 * float(recall[present].mean()),
        "per_class_f1": [100.0 * float(v) for v in f1],
    }
