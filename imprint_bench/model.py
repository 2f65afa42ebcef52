"""A usable model: a frozen backbone plus an imprinted head, rebuilt from one saved head file.

    imprint-bench dataset=image_folder dataset.root=~/photos method=ours save_head=photos.safetensors
    imprint-bench-predict photos.safetensors cat.jpg dog.jpg
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from imprint_bench.backbones import Backbone, load_backbone
from imprint_bench.errors import ConfigError
from imprint_bench.imprint.head import ImprintedHead


class ImprintedClassifier(nn.Module):
    """Images in, class scores out: ``head(backbone(preprocess(images)))``."""

    def __init__(self, backbone: Backbone, head: ImprintedHead) -> None:
        super().__init__()
        self.backbone = backbone.model
        self.preprocess = backbone.preprocess
        self.head = head

    @property
    def class_names(self) -> list[str]:
        return self.head.class_names

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Scores [B, C] for a preprocessed float batch [B, 3, H, W]."""
        return self.head(self.backbone(batch).flatten(1))

    @torch.no_grad()
    def predict_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> list[str]:
        """Class names predicted for PIL images (the backbone's own eval transform is applied)."""
        device = self.head.proxies.device
        names = []
        for start in range(0, len(images), batch_size):
            chunk = torch.stack([self.preprocess.pil_to_uint8(im) for im in images[start : start + batch_size]])
            scores = self(self.preprocess.normalize(chunk.to(device)))
            names += [self.class_names[i] for i in scores.argmax(1).tolist()]
        return names

    @classmethod
    def load(cls, head_path: str | Path, device: torch.device | str = "cpu") -> ImprintedClassifier:
        """Rebuild backbone + head from a head saved with ``save_head=`` (its metadata holds the backbone)."""
        meta = ImprintedHead.read_metadata(head_path)
        if "backbone" not in meta:
            raise ConfigError(f"{head_path} has no backbone metadata: it was saved from features, not images; "
                              "load it with ImprintedHead.load and apply it to your own embeddings")
        backbone = load_backbone(json.loads(meta["backbone"]), device)
        return cls(backbone, ImprintedHead.load(head_path, device))


def predict_main(argv: Sequence[str] | None = None) -> None:
    """``imprint-bench-predict HEAD IMAGE...``: print the predicted class of each image."""
    parser = argparse.ArgumentParser(description=predict_main.__doc__)
    parser.add_argument("head", type=Path, help="a head saved with imprint-bench ... save_head=PATH")
    parser.add_argument("images", type=Path, nargs="+", help="image files")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    try:
        model = ImprintedClassifier.load(args.head, args.device)
    except (ConfigError, ValueError, OSError) as err:
        raise SystemExit(f"error: {err}") from err
    images = [Image.open(p).convert("RGB") for p in args.images]
    for path, name in zip(args.images, model.predict_images(images), strict=True):
        print(f"{path}\t{name}")
