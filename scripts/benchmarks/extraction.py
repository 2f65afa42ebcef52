"""Extraction suite: images/s of each backbone (random weights) through the extractor's pipeline and model-only,
at every precision setting of the device."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from imprint_bench.backbones import Backbone, load_backbone
from imprint_bench.config import group_config

from .common import FeatureBank, Meter, Sizes, md_table

BACKBONES = ("resnet18", "resnet50", "vit_b_16", "swin_b", "efficientnet_lite0")
HEAVY_BACKBONES = ("vit_b_16", "swin_b")  # ~4 img/s on 2 CPU cores: measured on fewer images there


@dataclass(frozen=True)
class Precision:
    """An extraction setting, as ``conf/extract``: bf16 autocast and channels_last (both CUDA-only)."""

    name: str
    amp: bool
    channels_last: bool


CPU_PRECISIONS = (Precision("fp32", False, False),)
CUDA_PRECISIONS = (
    Precision("fp32", False, False),
    Precision("bf16", True, False),
    Precision("fp32+channels_last", False, True),
    Precision("bf16+channels_last", True, True),
)


def backbone_config(name: str) -> dict[str, Any]:
    """``conf/backbone/<name>.yaml`` with random weights (``pretrained: false``: nothing is downloaded)."""
    return {**group_config("backbone", name), "pretrained": False, "checkpoint": None}


def forward(backbone: Backbone, batch: torch.Tensor, precision: Precision) -> torch.Tensor:
    """One model call as the extractor makes it (``features._embed``): channels_last input, bf16 autocast."""
    if precision.channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=precision.amp):
        return backbone.model(batch).flatten(1).float()


@torch.inference_mode()
def time_pipeline(
    backbone: Backbone, images: torch.Tensor, batch_size: int, precision: Precision, device: torch.device
) -> dict[str, float]:
    """uint8 images on the host → upload → ``Preprocess.batch`` (resize, crop, normalise on the device) →
    model → features back on the host: the extractor's path for in-memory datasets."""
    with Meter(device) as meter:
        on_device = images.to(device)
        features = [
            forward(backbone, backbone.preprocess.batch(on_device[i : i + batch_size]), precision)
            for i in range(0, len(on_device), batch_size)
        ]
        torch.cat(features).cpu()
    return {
        "images_per_s": round(len(images) / meter.seconds, 2),
        "seconds": round(meter.seconds, 3),
        **meter.summary(),
    }


@torch.inference_mode()
def time_forward(
    backbone: Backbone, inputs: torch.Tensor, n_batches: int, precision: Precision, device: torch.device
) -> dict[str, float]:
    """Model-only throughput: the same preprocessed batch, already on the device, ``n_batches`` times."""
    with Meter(device) as meter:
        for _ in range(n_batches):
            forward(backbone, inputs, precision)
    return {
        "images_per_s": round(n_batches * len(inputs) / meter.seconds, 2),
        "seconds": round(meter.seconds, 3),
        **meter.summary(),
    }


def extract_suite(device: torch.device, sizes: Sizes, bank: FeatureBank) -> Iterator[tuple[str, Any]]:
    """Images/s of each backbone at 224 px (random weights) through the real pipeline from uint8 MNIST
    (28×28 grey) and CIFAR (32×32 RGB) tensors, next to the model-only forward on the same device."""
    precisions = CUDA_PRECISIONS if device.type == "cuda" else CPU_PRECISIONS
    generator = torch.Generator().manual_seed(0)
    rows = []
    for name in tqdm(BACKBONES, desc="extract", leave=False):
        n_images = sizes.extract_images_heavy if name in HEAVY_BACKBONES else sizes.extract_images
        batch_size = min(sizes.extract_batch, n_images)
        sources = {
            "mnist": torch.randint(0, 256, (n_images, 1, 28, 28), dtype=torch.uint8, generator=generator),
            "cifar": torch.randint(0, 256, (n_images, 3, 32, 32), dtype=torch.uint8, generator=generator),
        }
        start = time.perf_counter()
        backbone = load_backbone(backbone_config(name), device)
        build_s = time.perf_counter() - start
        with torch.inference_mode():
            inputs = backbone.preprocess.batch(sources["cifar"][:batch_size].to(device))
        for precision in precisions:
            memory_format = torch.channels_last if precision.channels_last else torch.contiguous_format
            backbone.model.to(memory_format=memory_format)
            with torch.inference_mode():  # first calls pay for kernel selection and allocator growth
                for images in sources.values():
                    forward(backbone, backbone.preprocess.batch(images[: sizes.warmup_images].to(device)), precision)
            row = {
                "backbone": name,
                "precision": precision.name,
                "images": n_images,
                "batch": batch_size,
                "input_px": int(inputs.shape[-1]),
                "build_s": round(build_s, 2),
            }
            for source, images in sources.items():
                row[f"pipeline_{source}"] = time_pipeline(backbone, images, batch_size, precision, device)
            row["model_only"] = time_forward(backbone, inputs, n_images // batch_size, precision, device)
            rows.append(row)
        del backbone, inputs
        if device.type == "cuda":
            torch.cuda.empty_cache()
    note = None if device.type == "cuda" else "fp32 only: bf16 autocast and channels_last are GPU settings"
    yield "backbones", rows
    yield "note", note


def render_extract(r: dict[str, Any]) -> list[str]:
    lines = ["### Extraction at 224 px (random weights)", ""]
    if r.get("note"):
        lines += [r["note"], ""]
    rows = []
    for row in r.get("backbones", []):
        parts = (row["pipeline_mnist"], row["pipeline_cifar"], row["model_only"])
        rows.append(
            [
                row["backbone"],
                row["precision"],
                row["images"],
                row["batch"],
                *(p["images_per_s"] for p in parts),
                max(p["host_peak_mib"] for p in parts),
                max(p["device_peak_mib"] for p in parts),
            ]
        )
    lines += md_table(
        [
            "backbone",
            "precision",
            "images",
            "batch",
            "pipeline img/s (MNIST 28² grey)",
            "pipeline img/s (CIFAR 32² RGB)",
            "model-only img/s",
            "host peak MiB",
            "device peak MiB",
        ],
        rows,
    )
    return lines
