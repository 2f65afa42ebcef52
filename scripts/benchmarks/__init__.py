"""The suites of ``scripts/bench.py`` by name: each yields (key, result) pairs as it measures, and renders
its results as a Markdown section."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from . import auto_k, engine, extraction, kmeans, memory, streaming
from .common import FeatureBank, Sizes

SUITES: dict[str, Callable[[torch.device, Sizes, FeatureBank], Iterator[tuple[str, Any]]]] = {
    "engine": engine.engine_suite,
    "kmeans": kmeans.kmeans_suite,
    "extract": extraction.extract_suite,
    "memory": memory.memory_suite,
    "auto_k": auto_k.auto_k_suite,
    "streaming": streaming.streaming_suite,
}
RENDERERS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "engine": engine.render_engine,
    "kmeans": kmeans.render_kmeans,
    "extract": extraction.render_extract,
    "memory": memory.render_memory,
    "auto_k": auto_k.render_auto_k,
    "streaming": streaming.render_streaming,
}
SUITE_NAMES = tuple(SUITES)
