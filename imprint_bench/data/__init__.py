"""Datasets: images (registry in ``images.py``), precomputed features (``npz.py``), synthetic mixtures, tasks.

This package imports no torch, so that planning can read the constants below; ``features.load_feature_set``
turns a dataset config into a FeatureSet.
"""

from __future__ import annotations

from typing import Any

#: Dataset kinds that are already features (no backbone involved).
FEATURE_KINDS = ("features", "synthetic")

#: ``task.unseen_test``: what happens to test rows of classes without training rows (task ``all``).
UNSEEN_TEST = ("error", "exclude")

#: The splits of every dataset.
SPLITS = ("train", "test")

#: File name endings of images in a folder dataset (torchvision's ``IMG_EXTENSIONS``, without importing it).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def backbone_label(dataset: dict[str, Any], backbone: dict[str, Any]) -> str:
    """The results table's backbone column: the backbone name, or the label of precomputed features."""
    if dataset.get("kind") in FEATURE_KINDS:
        return str(dataset.get("backbone", dataset.get("kind")))
    return str(backbone.get("name"))
