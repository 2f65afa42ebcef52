"""Datasets → FeatureSet: precomputed (.npz), synthetic mixtures, or images through a backbone and the cache."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:  # torch is imported only when features are loaded (fast start-up, cheap planning)
    import torch

    from imprint_bench.data.base import FeatureSet

#: Dataset kinds that are already features (no backbone involved).
FEATURE_KINDS = ("features", "synthetic")

#: ``task.unseen_test``: what happens to test rows of classes without training rows (task ``all``).
UNSEEN_TEST = ("error", "exclude")


def _plain(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def load_feature_set(
    dataset_cfg: DictConfig | dict[str, Any],
    backbone_cfg: DictConfig | dict[str, Any],
    extract_cfg: DictConfig | dict[str, Any],
    cache_dir: str | Path,
    data_root: str | Path,
    device: torch.device,
) -> FeatureSet:
    """The FeatureSet a job works on, on ``device``. Image datasets go through the feature cache."""
    ds = _plain(dataset_cfg)
    kind = ds.get("kind")
    if kind == "features":
        from imprint_bench.data.npz import load_npz_features

        return load_npz_features(ds["path"]).to(device)
    if kind == "synthetic":
        from imprint_bench.data.synthetic import make_mixture

        params = {k: v for k, v in ds.items() if k not in ("kind", "name", "backbone", "ls_lambda")}
        return make_mixture(**params).to(device)
    from imprint_bench.features import extract_feature_set

    return extract_feature_set(dataset_cfg, backbone_cfg, extract_cfg, Path(cache_dir), Path(data_root), device)


def backbone_label(dataset_cfg: DictConfig | dict[str, Any], backbone_cfg: DictConfig | dict[str, Any]) -> str:
    """The results table's backbone column: the backbone name, or the label of precomputed features."""
    ds = _plain(dataset_cfg)
    if ds.get("kind") in FEATURE_KINDS:
        return str(ds.get("backbone", ds.get("kind")))
    return str(_plain(backbone_cfg).get("name"))
