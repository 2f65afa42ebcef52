"""Where the config tree lives, its typed schemas and the OmegaConf resolvers it uses (both registered when the
package is imported, so that every composition, in the CLI, the sweeper or a test, is checked the same way)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

#: The Hydra configs ship as this package (the checkout's top-level ``conf/``; ``imprint_bench/conf`` links to it).
CONFIG_MODULE = "imprint_bench.conf"


def config_dir() -> Path:
    """The installed config tree as a folder (for reading single files; compose through ``CONFIG_MODULE``)."""
    return Path(str(resources.files(CONFIG_MODULE)))


def register_config() -> None:
    """The ``${cwd:}`` resolver (the directory imprint-bench was started from, usable before Hydra sets its
    runtime) and the config groups' schemas (:mod:`imprint_bench.config_schema`)."""
    from imprint_bench.config_schema import register_config_schemas

    OmegaConf.register_new_resolver("cwd", os.getcwd, replace=True)
    register_config_schemas()


def group_config(group: str, name: str) -> dict[str, Any]:
    """One member of a config group as Hydra composes it (its YAML over its base schema), as a plain dict:
    for scripts and tests that need e.g. a backbone's config without a whole run config."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            return OmegaConf.to_container(compose("config", overrides=[f"{group}={name}"])[group])
    finally:
        GlobalHydra.instance().clear()
