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

from imprint_bench.backbones import Backbone, load_backbone, resolve_device
from imprint_bench.data.containers import open_image
from imprint_bench.data.transforms import GREY_MODES
from imprint_bench.errors import ConfigError, printable
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
            try:
                chunk = torch.stack([self._uint8(im) for im in images[start : start + batch_size]])
            except RuntimeError as err:
                raise ConfigError(f"the images of one batch have different sizes or channels ({err}); this backbone "
                                  "keeps native sizes, so give images like the ones the head was imprinted on") from err
            features = self.backbone(self.preprocess.normalize(chunk.to(device))).flatten(1)
            if features.shape[1] != self.head.proxies.shape[1]:
                raise ConfigError(f"these images give {features.shape[1]}-d features but the head expects "
                                  f"{self.head.proxies.shape[1]}-d ones: give images like the ones it was imprinted "
                                  f"on (size, grey or colour; {tuple(chunk.shape[1:])} here)")
            scores = self.head(features)
            names += [self.class_names[i] for i in scores.argmax(1).tolist()]
        return names

    def _uint8(self, image: Image.Image) -> torch.Tensor:
        """The image as the backbone takes it. A backbone without ``to_rgb`` (``pixels``) imprinted on grey data
        (e.g. ``digits``) gets a grey image's one channel, not the three copies of an RGB conversion."""
        rgb = self.preprocess.pil_to_uint8(image)
        grey_head = not self.preprocess.to_rgb and rgb[:1].numel() == self.head.proxies.shape[1]
        return rgb[:1] if grey_head and image.mode in GREY_MODES else rgb

    @classmethod
    def load(cls, head_path: str | Path, device: torch.device | str = "cpu",
             checkpoint: str | Path | None = None) -> ImprintedClassifier:
        """Rebuild backbone + head from a head saved with ``save_head=`` (its metadata holds the backbone).

        A backbone with local weights is loaded from ``checkpoint`` only: a path written in a file is never
        followed on its own (it could point anywhere)."""
        meta = ImprintedHead.read_metadata(head_path)
        if "backbone" not in meta:
            raise ConfigError(f"{head_path} has no backbone metadata: it was saved from features, not images; "
                              "load it with ImprintedHead.load and apply it to your own embeddings")
        head = ImprintedHead.load(head_path, device)
        try:
            config = json.loads(meta["backbone"])
        except ValueError as err:
            raise ConfigError(f"{head_path}: unreadable backbone metadata ({err})") from err
        if not isinstance(config, dict):
            raise ConfigError(f"{head_path}: the backbone metadata must be a mapping, got {config!r}")
        config = {k: v for k, v in config.items() if k not in ("checkpoint_file", "amp")}
        if config.get("checkpoint"):
            if checkpoint is None:
                raise ConfigError(f"{head_path} was imprinted on a backbone with local weights "
                                  f"({config['checkpoint']}); pass that weights file explicitly "
                                  "(imprint-bench-predict --checkpoint PATH, or checkpoint=PATH)")
            config["checkpoint"] = str(checkpoint)
        return cls(load_backbone(config, device), head)


def predict_main(argv: Sequence[str] | None = None) -> None:
    """``imprint-bench-predict HEAD IMAGE...``: print the predicted class of each image."""
    parser = argparse.ArgumentParser(description=predict_main.__doc__)
    parser.add_argument("head", type=Path, help="a head saved with imprint-bench ... save_head=PATH")
    parser.add_argument("images", type=Path, nargs="+", help="image files")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", type=Path, help="the backbone's local weights file, if it was imprinted "
                        "on one (a path stored in the head file is never followed)")
    args = parser.parse_args(argv)
    if not args.head.is_file():
        raise SystemExit(f"error: head file {args.head} does not exist or is not a file")
    try:
        device = resolve_device(args.device)
    except ConfigError as err:
        raise SystemExit(f"error: --device: {err}") from None
    try:
        model = ImprintedClassifier.load(args.head, device, args.checkpoint)
    except (ConfigError, ValueError, OSError) as err:
        raise SystemExit(f"error: {err}") from err
    except Exception as err:  # safetensors' own error for a file that is not a safetensors file
        raise SystemExit(f"error: {args.head} is not a head file saved by imprint-bench ({err})") from err
    images = []
    for path in args.images:
        try:
            with open_image(path) as image:
                image.load()
                images.append(image.copy())
        except ConfigError as err:
            raise SystemExit(f"error: {err}") from err
        except (OSError, SyntaxError, ValueError) as err:
            raise SystemExit(f"error: cannot decode image {path}: {err}") from err
    try:
        names = model.predict_images(images)
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from err
    for path, name in zip(args.images, names, strict=True):
        print(f"{printable(str(path))}\t{printable(name)}")
