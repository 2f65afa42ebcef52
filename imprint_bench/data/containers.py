"""In-memory and file-backed image containers: parts, splits and datasets with integer labels.

A dataset is an :class:`ImageDataset`: train and test :class:`ImageSplit`s made of parts that are either in
memory (:class:`ImageArray`: uint8 ``[N, C, H, W]``, e.g. MNIST, CIFAR) or image files (:class:`ImageFiles`,
e.g. ImageNet, your own folders), with integer labels and class names.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from imprint_bench.data.transforms import Preprocess
from imprint_bench.errors import ConfigError


@dataclass
class ImageArray:
    """Images held in memory: uint8 ``[N, C, H, W]`` (C = 1 or 3) and int64 labels ``[N]``."""

    images: torch.Tensor
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray, labels: np.ndarray) -> ImageArray:
        return ImageArray(self.images[torch.from_numpy(rows)], labels)


@dataclass
class ImageFiles:
    """Image files (paths relative to ``root``) and int64 labels, decoded by a DataLoader at extraction."""

    root: Path
    files: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray, labels: np.ndarray) -> ImageFiles:
        return ImageFiles(self.root, [self.files[row] for row in rows], labels)

    def fingerprint(self, with_sizes: bool) -> str:
        """Digest of every file's relative path and label, and size if ``with_sizes`` (feature-cache key)."""
        digest = hashlib.sha256()
        for name, label in zip(self.files, self.labels.tolist(), strict=True):
            size = (self.root / name).stat().st_size if with_sizes else ""
            digest.update(f"{name}\0{size}\0{label}\n".encode())
        return digest.hexdigest()


ImagePart = ImageArray | ImageFiles


class ImageFileDataset(torch.utils.data.Dataset):
    """Map-style dataset decoding :class:`ImageFiles` into resized, cropped uint8 tensors (DataLoader workers)."""

    def __init__(self, part: ImageFiles, preprocess: Preprocess) -> None:
        self.part = part
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.part)

    def __getitem__(self, index: int) -> torch.Tensor:
        path = self.part.root / self.part.files[index]
        with open_image(path) as image:
            try:
                return self.preprocess.pil_to_uint8(image)
            except (OSError, ValueError, SyntaxError) as err:  # Pillow's errors for truncated or malformed data
                raise ConfigError(f"cannot decode image {path}: {err}; remove or replace the file") from err


def open_image(path: Path) -> Image.Image:
    """An image file opened for decoding, its size checked from the header first: a file that does not decode, or
    whose pixel count is above Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``), is a ConfigError
    naming the file, before the pixels take any memory."""
    try:
        with warnings.catch_warnings():  # the size is checked below, with a clearer message than Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except (OSError, Image.DecompressionBombError) as err:  # not an image, unreadable, or far above the limit
        raise ConfigError(f"cannot read image {path}: {err}") from err
    width, height = image.size
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        image.close()
        raise ConfigError(f"image {path} is {width}×{height} = {width * height / 1e6:.0f} M pixels, above the limit "
                          f"of {limit / 1e6:.0f} M (a decompression bomb, or a photo far larger than the backbone "
                          "needs): resize it first")
    return image


@dataclass
class ImageSplit:
    """One split: its parts in order (rows are numbered through the parts)."""

    parts: list[ImagePart]

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    @property
    def labels(self) -> np.ndarray:
        return np.concatenate([part.labels for part in self.parts]) if self.parts else np.zeros(0, np.int64)

    def take(self, rows: np.ndarray, labels: np.ndarray | None = None) -> ImageSplit:
        """The given rows (ascending), optionally relabelled with ``labels`` (one per row)."""
        labels = self.labels[rows] if labels is None else np.asarray(labels, dtype=np.int64)
        bounds = np.cumsum([0] + [len(part) for part in self.parts])
        parts = []
        for index, part in enumerate(self.parts):
            inside = (rows >= bounds[index]) & (rows < bounds[index + 1])
            if inside.any():
                parts.append(part.take(rows[inside] - bounds[index], labels[inside]))
        return ImageSplit(parts)


@dataclass
class ImageDataset:
    """Train and test splits with labels indexing ``class_names``."""

    train: ImageSplit
    test: ImageSplit
    class_names: list[str]

    def split(self, name: str) -> ImageSplit:
        return self.train if name == "train" else self.test
