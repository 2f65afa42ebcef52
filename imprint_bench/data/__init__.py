"""Datasets: images (registry in ``images.py``), precomputed features (``npz.py``), synthetic mixtures, tasks.

This package imports no torch, so that planning can read the constants below; ``features.load_feature_set``
turns a dataset config into a FeatureSet.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

#: Dataset kinds that are already features (no backbone involved).
FEATURE_KINDS = ("features", "synthetic")

#: ``task.unseen_test``: what happens to test rows of classes without training rows (task ``all``).
UNSEEN_TEST = ("error", "exclude")


def _plain(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def backbone_label(dataset_cfg: DictConfig | dict[str, Any], backbone_cfg: DictConfig | dict[str, Any]) -> str:
    """The results table's backbone column: the backbone name, or the label of precomputed features."""
    ds = _plain(dataset_cfg)
    if ds.get("kind") in FEATURE_KINDS:
        return str(ds.get("backbone", ds.get("kind")))
    return str(_plain(backbone_cfg).get("name"))
