"""Image preprocessing for backbones: one definition that runs on PIL images and on uint8 tensor batches.

A :class:`Preprocess` is the eval transform of a backbone (resize, centre crop, scale to [0, 1],
normalise). ``resize_crop`` is written once with ``torchvision.transforms.v2.functional`` calls, which
accept both a PIL image (file datasets, decoded in DataLoader workers) and a uint8 ``[B, C, H, W]``
tensor batch on any device (in-memory datasets such as MNIST or CIFAR, resized on the GPU when there
is one). On PIL input it is exactly torchvision's ``ImageClassification`` / timm's eval transform; on
tensors it is torchvision's tensor semantics (antialiased, rounded back to uint8), which agree with
the PIL path to within about one grey level.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from PIL import Image

from imprint_bench.errors import ConfigError, check_choice

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: ``backbone.interpolation`` → torchvision's InterpolationMode member (torchvision is imported only when images are
#: transformed: a job on precomputed features never pays for it).
INTERPOLATIONS = {"nearest": "NEAREST", "bilinear": "BILINEAR", "bicubic": "BICUBIC"}


def _functional() -> Any:
    """torchvision's functional transforms (v2), imported on first use."""
    from torchvision.transforms.v2 import functional

    return functional


#: PIL modes of single-channel images.
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


@dataclass(frozen=True)
class Preprocess:
    """Eval transform: resize → centre crop → [0, 1] → normalise (→ 3 channels if ``to_rgb``).

    ``resize``: target of the shorter side (aspect kept) or, with ``keep_aspect=False``, of both sides;
    ``None`` keeps the native size. ``crop``: side of the square centre crop, ``None`` for no crop.
    ``mean``/``std`` have one value per channel or a single value for all channels.
    """

    resize: int | None
    crop: int | None
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    to_rgb: bool = True
    keep_aspect: bool = True

    def __post_init__(self) -> None:
        check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        for field_name in ("resize", "crop"):
            value = getattr(self, field_name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ConfigError(f"{field_name} must be a positive integer or null, got {value!r}")
        if self.resize is not None and self.crop is not None and self.crop > self.resize:
            raise ConfigError(f"crop ({self.crop}) must not exceed resize ({self.resize}): the crop would pad")
        if len(self.mean) not in (1, 3) or len(self.std) != len(self.mean):
            raise ConfigError(
                f"mean and std need 1 or 3 values each and the same length, got mean={self.mean} std={self.std}"
            )
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"std values must be positive, got {self.std}")

    def describe(self) -> dict:
        """Plain-dict form (cache keys, metadata)."""
        return asdict(self)

    def resize_crop(self, images: Image.Image | torch.Tensor) -> Image.Image | torch.Tensor:
        """Resize and centre-crop a PIL image or a uint8 tensor batch ``[B, C, H, W]`` (stays uint8)."""
        if self.resize is not None:
            size = [self.resize] if self.keep_aspect else [self.resize, self.resize]
            from torchvision.transforms import InterpolationMode

            mode = InterpolationMode[INTERPOLATIONS[self.interpolation]]
            images = _functional().resize(images, size, interpolation=mode, antialias=True)
        if self.crop is not None:
            images = _functional().center_crop(images, [self.crop, self.crop])
        return images

    def pil_to_uint8(self, image: Image.Image) -> torch.Tensor:
        """File datasets: decoded image → resized, cropped uint8 tensor ``[3, H, W]`` (runs in workers)."""
        return _functional().pil_to_tensor(self.resize_crop(image.convert("RGB")))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 batch ``[B, C, H, W]`` → float32 normalised batch (grey replicated to RGB if ``to_rgb``)."""
        if self.to_rgb and images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1)
        return (images.float().div_(255.0) - mean).div_(std)

    def batch(self, images: torch.Tensor) -> torch.Tensor:
        """In-memory datasets: uint8 batch on the target device → model input (the GPU-side transform)."""
        return self.normalize(self.resize_crop(images))
