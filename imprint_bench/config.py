"""Where the config tree lives, and the OmegaConf resolvers it uses (registered when the package is imported)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from omegaconf import OmegaConf

#: The Hydra configs ship as this package (the checkout's top-level ``conf/``; ``imprint_bench/conf`` links to it).
CONFIG_MODULE = "imprint_bench.conf"


def config_dir() -> Path:
    """The installed config tree as a folder (for reading single files; compose through ``CONFIG_MODULE``)."""
    return Path(str(resources.files(CONFIG_MODULE)))


def register_resolvers() -> None:
    """``${cwd:}``: the directory imprint-bench was started from (usable before Hydra sets its runtime)."""
    OmegaConf.register_new_resolver("cwd", os.getcwd, replace=True)
