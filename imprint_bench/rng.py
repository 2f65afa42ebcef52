"""Explicit, order-independent randomness: every random choice is seeded from (run seed, stage, class)."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from any parts (run seed, stage name, class label, ...), stable across runs/platforms."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def generator(*parts: object, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator on ``device`` seeded from ``derive_seed(*parts)``."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(*parts))
    return g
