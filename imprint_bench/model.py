"""A usable model: a frozen backbone plus an imprinted head, rebuilt from one saved head file.

    imprint-bench dataset=image_folder dataset.root=~/photos method=ours save_head=photos.safetensors
    imprint-bench-predict photos.safetensors cat.jpg dog.jpg
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
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


#: Metadata of a head file that describes its classes as they were: a grown head writes its own.
_STALE_METADATA = ("labels", "task", "norm_inf", "agg", "class_names", "method", "format")


def extend_main(argv: Sequence[str] | None = None) -> None:
    """``imprint-bench-extend HEAD DATA --out NEW``: add the classes of DATA to a saved head, without its old rows."""
    parser = argparse.ArgumentParser(description="Add the classes of DATA to a saved head, without its old rows.",
                                     epilog=(
        "DATA is an .npz of features (X_train, y_train, optional class_names) or a folder of images, one subfolder "
        "per class (the head's backbone extracts them). Per-class methods keep the existing proxies bit-identical; "
        "ls/kls re-solve all proxies from the statistics the head keeps; a CL2N centre moves (the command says so)."))
    parser.add_argument("head", type=Path, help="a head saved with save_head=PATH (or ImprintedHead.save)")
    parser.add_argument("data", type=Path, help="an .npz of features or a folder of class subfolders of images")
    parser.add_argument("--out", type=Path, required=True, help="where to write the grown head (.safetensors)")
    parser.add_argument("--replace", action="store_true", help="imprint classes the head already has again")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", type=Path, help="the backbone's local weights file, if it has one")
    args = parser.parse_args(argv)
    try:
        _extend(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def _extend(args: argparse.Namespace) -> None:
    from imprint_bench.errors import check_writable_folder
    from imprint_bench.imprint.incremental import check_extensible, extend_head, extend_head_streamed

    if not args.head.is_file():
        raise ConfigError(f"head file {args.head} does not exist or is not a file")
    if not args.data.exists():
        raise ConfigError(f"{args.data} does not exist: give an .npz of features or a folder of class subfolders")
    if args.out.is_dir():
        raise ConfigError(f"--out {args.out} is a folder; give a file path, e.g. {args.out / 'head.safetensors'}")
    if args.out.resolve() == args.head.resolve():
        raise ConfigError("--out must differ from HEAD (the head you extend is kept as it is)")
    check_writable_folder(args.out.parent, f"--out {args.out}: cannot write into {args.out.parent}",
                          "choose a writable folder")
    device = resolve_device(args.device)
    try:
        meta = ImprintedHead.read_metadata(args.head)
        head = ImprintedHead.load(args.head, device)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    except Exception as err:  # safetensors' own error for a file that is not a safetensors file
        raise ConfigError(f"{args.head} is not a head file saved by imprint-bench ({err})") from err
    if args.data.is_dir():
        names = sorted(p.name for p in args.data.iterdir() if p.is_dir() and not p.name.startswith("."))
        check_extensible(head, names, head.proxies.shape[1], args.replace)
        batches = _image_batches(args, names, device)
        if head.method is not None and head.method.gen.streaming:  # the rows go straight into the GEN's state
            grown = extend_head_streamed(head, batches, names, args.replace)
        else:
            grown = extend_head(head, [torch.cat(list(b())) for b in batches], names, args.replace)
    else:
        names, xs = _npz_rows(args.data)
        _check_backbone_label(args.data, meta)
        check_extensible(head, names, int(xs[0].shape[1]) if xs else head.proxies.shape[1], args.replace)
        grown = extend_head(head, xs, names, args.replace)
    extra = {k: v for k, v in meta.items() if k not in _STALE_METADATA and not k.startswith("growth.")}
    grown.head.save(args.out, extra)
    assert grown.head.growth.rows is not None
    rows = sum(grown.head.growth.rows[-len(names):])
    print(f"added {len(grown.added) - len(grown.replaced)} classes, replaced {len(grown.replaced)} ({rows} rows): "
          f"{grown.head.n_classes} classes, {grown.head.n_proxies} proxies -> {printable(str(args.out))}")
    for note in grown.notes:
        print(f"note: {note}")
    print("the head equals imprinting all its classes at once, the new ones numbered after the old" if grown.exact else
          "the head is NOT what imprinting all its classes at once would give (see the note above)")


def _check_backbone_label(path: Path, meta: dict[str, str]) -> None:
    """A features file that names its backbone (a ``backbone`` array) must name the head's, when the head knows it."""
    import numpy as np

    with np.load(path, allow_pickle=False) as npz:
        data = str(npz["backbone"]) if "backbone" in npz.files else None
    try:
        head = meta.get("backbone_label") or json.loads(meta.get("backbone", "{}")).get("name")
    except (ValueError, AttributeError):
        head = None
    if data and head and data != head:
        raise ConfigError(f"{path} holds features of backbone {printable(data)!r} but the head was imprinted on "
                          f"{printable(str(head))!r}: extract the new classes with the head's backbone")


def _npz_rows(path: Path) -> tuple[list[str], list[torch.Tensor]]:
    """Class names and train rows per class of a features .npz (the ``features`` dataset's reader and checks)."""
    from imprint_bench.data.npz import load_npz_features

    features = load_npz_features(path)
    labels = sorted(set(features.y_train.tolist()))
    names = [features.class_names[c] if c < len(features.class_names) else str(c) for c in labels]
    return names, [features.class_rows(c) for c in labels]


def _image_batches(args: argparse.Namespace, names: list[str],
                   device: torch.device) -> list[Callable[[], Iterator[torch.Tensor]]]:
    """Per class folder, a function yielding its images' features in batches of 32, by the head's own backbone (with
    a progress bar): the caller holds them or streams them into the GEN."""
    from tqdm.auto import tqdm

    from imprint_bench.data import IMAGE_EXTENSIONS

    model = ImprintedClassifier.load(args.head, device, args.checkpoint)
    files = {n: sorted(p for p in (args.data / n).rglob("*") if p.is_file() and p.name.lower().endswith(
        IMAGE_EXTENSIONS)) for n in names}
    empty = [n for n, f in files.items() if not f]
    if empty:
        raise ConfigError(f"class folders without images ({', '.join(IMAGE_EXTENSIONS)}): {empty[:10]}")
    bar = tqdm(total=sum(map(len, files.values())), desc="extracting", unit="image")

    def batches(name: str) -> Iterator[torch.Tensor]:
        with torch.no_grad():
            for start in range(0, len(files[name]), 32):
                images = []
                for path in files[name][start:start + 32]:
                    try:
                        with open_image(path) as image:
                            image.load()
                            images.append(model._uint8(image))
                    except (OSError, SyntaxError, ValueError) as err:
                        raise ConfigError(f"cannot decode image {path}: {err}") from err
                batch = model.preprocess.normalize(torch.stack(images).to(device))
                bar.update(len(images))
                yield model.backbone(batch).flatten(1).float()

    return [lambda name=name: batches(name) for name in names]
