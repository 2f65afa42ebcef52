"""OmegaConf resolvers the config tree uses (registered when the package is imported)."""

from __future__ import annotations

import os

from omegaconf import OmegaConf


def register_resolvers() -> None:
    """``${cwd:}``: the directory imprint-bench was started from (usable before Hydra sets its runtime)."""
    OmegaConf.register_new_resolver("cwd", os.getcwd, replace=True)
