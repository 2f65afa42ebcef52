"""Run identity: the stable hashes that name cells, runs and caches, and the library versions recorded with them.

Every name on disk comes from here: :func:`stable_hash` for cells, runs, plans and synthetic feature sets,
:func:`content_key` for the feature cache; :func:`recorded_versions` goes into every result row and
:func:`runtime_versions` into every feature-cache key.
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
from importlib import metadata
from typing import Any

#: Distributions whose versions go into every result row (the first installed name of each entry counts).
RECORDED = {"torch": ("torch",), "numpy": ("numpy",), "faiss": ("faiss-cpu", "faiss-gpu", "faiss"),
            "timm": ("timm",), "imprint_bench": ("imprint-bench",)}

#: Modules whose runtime versions (build tags included, e.g. ``+cu130``) change extracted features.
EXTRACTION_MODULES = {"torch": "torch", "torchvision": "torchvision", "timm": "timm", "pillow": "PIL"}


def canonical_json(obj: Any) -> str:
    """Key-sorted JSON of ``obj`` (other objects by ``str``): equal descriptions give equal text."""
    return json.dumps(obj, sort_keys=True, default=str)


def stable_hash(obj: Any) -> str:
    """MD5 of the canonical JSON of ``obj``: the deterministic name of a cell, run, plan or feature set."""
    return hashlib.md5(canonical_json(obj).encode()).hexdigest()


def content_key(obj: Any) -> str:
    """The first 32 hex digits of the SHA-256 of the canonical JSON of ``obj``: a feature-cache key."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:32]


def _installed_version(names: tuple[str, ...]) -> str:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


@functools.cache
def recorded_versions() -> str:
    """Versions recorded in every result row (k-means and GEMM results can differ between releases), as
    JSON. Read from the installed distributions' metadata, so that no library is imported for it."""
    versions = {"python": platform.python_version()}
    versions.update({key: _installed_version(names) for key, names in RECORDED.items()})
    return canonical_json(versions)


def runtime_versions() -> dict[str, str]:
    """Versions of the imported extraction stack, as the modules report them (part of feature-cache keys)."""
    import importlib

    return {key: importlib.import_module(module).__version__ for key, module in EXTRACTION_MODULES.items()}
