"""imprint_bench: weight imprinting on frozen foundation models (the IMPRINT framework), benchmarked.

The public names are imported on first use, so that ``imprint-bench --help`` and sweep planning
start without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from imprint_bench.config import register_config

__all__ = ["AggSpec", "GenSpec", "ImprintedHead", "MethodSpec"]
__version__ = "0.1.0"

_EXPORTS = {
    "ImprintedHead": "imprint_bench.imprint.head",
    "AggSpec": "imprint_bench.imprint.spec",
    "GenSpec": "imprint_bench.imprint.spec",
    "MethodSpec": "imprint_bench.imprint.spec",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'imprint_bench' has no attribute {name!r}")


register_config()
