"""Typed schemas of the config groups, registered with Hydra's ConfigStore.

Each YAML file of a group starts from its group's base schema (``defaults: [/schema/<group>/base_<group>@_here_,
_self_]``) and states
only what differs from it. A wrong type (``gen.kmeans_iters=abc``) or an unknown key (``gen.kk=3``) fails at compose
time with Hydra's message, before anything runs. Stage names (``gen.name=kmeanz``) are the names of the stage
registries (:mod:`imprint_bench.imprint.registry`), checked when planning with a message that
lists the registered names. The schemas of the stages, the task, the subset and the extraction settings are made
from the engine's own frozen dataclasses (:func:`schema_of`), so each has one definition.

Backbones and datasets have a base schema with the fields every member has, and a few kinds that add their own
(a torchvision ``weights`` enum name, a dataset's ``root``): a member never gains a key it did not have, so
configuration hashes stay what they were.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from imprint_bench.data.extract_settings import ExtractSettings
from imprint_bench.data.subsets import Subset
from imprint_bench.data.task_spec import TaskSpec
from imprint_bench.imprint.spec import AggSpec, GenSpec

# OmegaConf reads these annotations at run time: Optional[...] and List[...] spelled as it understands them.
# ruff: noqa: UP045


def schema_of(spec: type, name: str, exclude: tuple[str, ...] = (), required: tuple[str, ...] = ()) -> type:
    """The config schema of a frozen spec dataclass: the same fields and defaults, mutable (Hydra applies overrides
    to it), with types OmegaConf can check (a union of several types becomes Any, a tuple a list). One dataclass
    per concept: the engine's spec is the source, the schema follows it."""
    hints = typing.get_type_hints(spec)
    out = []
    for f in dataclasses.fields(spec):
        if f.name in exclude:
            continue
        kind = _omegaconf_type(hints[f.name])
        if f.name in required:
            out.append((f.name, kind, field(default=MISSING)))
        elif f.default is not dataclasses.MISSING:
            out.append((f.name, kind, field(default=list(f.default) if isinstance(f.default, tuple) else f.default)))
        else:
            out.append((f.name, kind, field(default=MISSING)))
    schema = dataclasses.make_dataclass(name, out)
    schema.__module__ = __name__
    schema.__doc__ = f"The config schema of {spec.__qualname__} (generated)."
    return schema


def _omegaconf_type(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if len(args) == 1:
            return Optional[_omegaconf_type(args[0])]
        return Any
    if typing.get_origin(hint) is tuple:
        return list[args[0]] if len(args) == 2 and args[1] is Ellipsis else Any
    return hint


@dataclass
class NormConfig:
    """NORMpre, NORMpost, NORMinf (names of the NORM registry: ``imprint.registry.NORM``)."""

    pre: str = "l2"
    post: str = "l2"
    inf: str = "l2"


#: GEN: the method and its proxies per class (k = -1: every sample; k = auto: chosen per class). An external
#: function (gen=custom) has no schema: its arguments are its own keys.
GenConfig = schema_of(GenSpec, "GenConfig", exclude=("target", "args"))
#: AGG: max (inner product) or an m-NN vote with a distance and a weighting.
AggConfig = schema_of(AggSpec, "AggConfig")
#: A class subset of the dataset, optionally few-shot, with a validation split.
TaskConfig = schema_of(TaskSpec, "TaskConfig", required=("name",))
#: How features are extracted (part of no hash except amp).
ExtractConfig = schema_of(ExtractSettings, "ExtractConfig")
#: A fixed part of each split (part of the feature-cache key).
SubsetConfig = schema_of(Subset, "SubsetConfig")


@dataclass
class PathsConfig:
    """Where files go (all under ``root``: the working directory or $IMPRINT_BENCH_ROOT)."""

    root: str = "${oc.env:IMPRINT_BENCH_ROOT,${cwd:}}"
    output_dir: str = "${paths.root}/outputs"
    cache_dir: str = "${paths.output_dir}/cache"
    results_dir: str = "${paths.output_dir}/results"
    log_dir: str = "${paths.output_dir}/logs"
    data_root: str = "${oc.env:IMPRINT_BENCH_DATA,${paths.output_dir}/data}"


@dataclass
class BackboneConfig:
    """Fields every backbone has; transform overrides null = the weights' own eval transform."""

    name: str = MISSING
    source: str = MISSING  # effnet_lite | torchvision | timm | pixels
    pretrained: bool = True  # false: random init (seeded by init_seed)
    init_seed: int = 0
    ls_lambda: float = 1e-4  # ridge λ of ls/kls = the weight decay of the original training
    resize: Optional[int] = None
    crop: Optional[int] = None
    interpolation: Optional[str] = None
    mean: Optional[list[float]] = None
    std: Optional[list[float]] = None


@dataclass
class CheckpointBackboneConfig(BackboneConfig):
    """A backbone whose weights can come from a local checkpoint file."""

    checkpoint: Optional[str] = None


@dataclass
class TorchvisionBackboneConfig(CheckpointBackboneConfig):
    """A torchvision model with a weights enum member."""

    weights: str = "IMAGENET1K_V1"


@dataclass
class ImageDatasetConfig:
    """Fields every image dataset has."""

    kind: str = MISSING
    name: str = MISSING
    download: bool = False
    mapping: Optional[str] = None  # label remapping after loading (null = the dataset's own labels)
    subset: SubsetConfig = field(default_factory=SubsetConfig)


@dataclass
class RootDatasetConfig(ImageDatasetConfig):
    """An image dataset read from a folder."""

    root: Optional[str] = None


@dataclass
class SplitDatasetConfig(ImageDatasetConfig):
    """An image dataset without a test split of its own: split stratified here."""

    test_fraction: float = 0.2
    split_seed: int = 0


@dataclass
class FolderDatasetConfig(SplitDatasetConfig):
    """Your own class-per-folder images."""

    root: str = MISSING


@dataclass
class ConcatDatasetConfig(ImageDatasetConfig):
    """Several datasets as one (their labels joined through ``mapping``)."""

    members: list[str] = field(default_factory=list)


@dataclass
class FeaturesDatasetConfig:
    """Precomputed features in a .npz file."""

    kind: str = "features"
    name: Optional[str] = None  # null = a 'name' entry of the .npz, else the file's stem
    path: str = MISSING
    backbone: Optional[str] = None  # null = a 'backbone' entry of the .npz, else "precomputed"
    ls_lambda: float = 1e-4


@dataclass
class SyntheticDatasetConfig:
    """A Gaussian mixture per class (features directly; tests and demos)."""

    kind: str = "synthetic"
    name: str = "synthetic"
    n_classes: int = 10
    modes: int = 4
    dim: int = 64
    n_train_per_class: int = 200
    n_test_per_class: int = 100
    spread: float = 3.0
    noise: float = 1.0
    seed: int = 0
    backbone: str = "synthetic"
    ls_lambda: float = 1e-4


@dataclass
class TrackerConfig:
    """An experiment tracker (a sink; Parquet stays the source of truth)."""

    name: str = "none"  # none | wandb | mlflow


@dataclass
class WandbTrackerConfig(TrackerConfig):
    """Weights & Biases: one run per configuration, grouped by experiment."""

    project: str = "imprint_bench"
    entity: Optional[str] = None
    mode: Optional[str] = None  # online | offline | disabled; null = $WANDB_MODE or online


@dataclass
class MlflowTrackerConfig(TrackerConfig):
    """MLflow: one run per configuration, nested under a run per experiment."""

    tracking_uri: str = "sqlite:///${paths.output_dir}/mlflow.db"  # any MLflow tracking URI (a server too)
    artifact_location: str = "${paths.output_dir}/mlartifacts"  # where a new MLflow experiment keeps artifacts
    experiment: str = "imprint_bench"  # the MLflow experiment; each experiment_name is a parent run in it


#: Where the schemas live (``schema/<group>/<name>``), out of the groups' own option lists.
SCHEMA_GROUP = "schema"

#: (group, schema name, schema) registered with the ConfigStore.
SCHEMAS: tuple[tuple[str, str, Any], ...] = (
    ("norm", "base_norm", NormConfig),
    ("gen", "base_gen", GenConfig),
    ("agg", "base_agg", AggConfig),
    ("task", "base_task", TaskConfig),
    ("extract", "base_extract", ExtractConfig),
    ("paths", "base_paths", PathsConfig),
    ("backbone", "base_backbone", BackboneConfig),
    ("backbone", "base_checkpoint_backbone", CheckpointBackboneConfig),
    ("backbone", "base_torchvision_backbone", TorchvisionBackboneConfig),
    ("tracker", "base_tracker", TrackerConfig),
    ("tracker", "base_wandb_tracker", WandbTrackerConfig),
    ("tracker", "base_mlflow_tracker", MlflowTrackerConfig),
    ("dataset", "base_image_dataset", ImageDatasetConfig),
    ("dataset", "base_root_dataset", RootDatasetConfig),
    ("dataset", "base_split_dataset", SplitDatasetConfig),
    ("dataset", "base_folder_dataset", FolderDatasetConfig),
    ("dataset", "base_concat_dataset", ConcatDatasetConfig),
    ("dataset", "base_features_dataset", FeaturesDatasetConfig),
    ("dataset", "base_synthetic_dataset", SyntheticDatasetConfig),
)


def register_config_schemas() -> None:
    """Register every schema (idempotent: the ConfigStore keeps the last registration)."""
    store = ConfigStore.instance()
    for group, name, node in SCHEMAS:
        store.store(group=f"{SCHEMA_GROUP}/{group}", name=name, node=node)
