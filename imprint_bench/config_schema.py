"""Typed schemas of the config groups, registered with Hydra's ConfigStore.

Each YAML file of a group starts from its group's base schema (``defaults: [/schema/<group>/base_<group>@_here_,
_self_]``) and states
only what differs from it. A wrong type (``gen.k=abc``), an unknown stage name (``gen.name=kmeanz``) or an unknown
key (``gen.kk=3``) fails at compose time with Hydra's message, before anything runs. The stage names are the
enumerations of :mod:`imprint_bench.imprint.spec`, shared with the engine and the grid.

Backbones and datasets have a base schema with the fields every member has, and a few kinds that add their own
(a torchvision ``weights`` enum name, a dataset's ``root``): a member never gains a key it did not have, so
configuration hashes stay what they were.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from imprint_bench.imprint.spec import AggMethod, Distance, FeatureNorm, GenMethod, KmeansBackend, ProxyNorm, Weighting

# OmegaConf reads these annotations at run time: Optional[...] and List[...] spelled as it understands them.
# ruff: noqa: UP045


@dataclass
class NormConfig:
    """NORMpre, NORMpost, NORMinf."""

    pre: FeatureNorm = FeatureNorm.l2
    post: ProxyNorm = ProxyNorm.l2
    inf: FeatureNorm = FeatureNorm.l2


@dataclass
class GenConfig:
    """GEN: the method and its proxies per class (k = -1: every sample)."""

    name: GenMethod = GenMethod.mean
    k: Any = 1  # proxies per class: an integer >= 1, -1 (every sample) or auto (per class; checked when planning)
    backend: KmeansBackend = KmeansBackend.auto
    lam: Optional[float] = None  # ls/kls ridge; null = the backbone's (or feature file's) ls_lambda
    kmeans_iters: int = 300


@dataclass
class AggConfig:
    """AGG: max (inner product) or an m-NN vote with a distance and a weighting."""

    name: AggMethod = AggMethod.max
    m: int = -1
    distance: Distance = Distance.inner_product
    weighting: Weighting = Weighting.uniform


@dataclass
class TaskConfig:
    """A class subset of the dataset, optionally few-shot."""

    name: str = MISSING
    classes: Optional[list[int]] = None  # null = every class of the dataset, in label order
    shots: int = -1  # samples per class used for imprinting; -1 = all
    unseen_test: str = "error"  # test rows of classes without training rows: error | exclude
    val_fraction: float = 0.0  # share of each class's training rows held out for validation (0 = none)
    val_per_class: Optional[int] = None  # or a fixed number of validation rows per class (few-shot)


@dataclass
class ExtractConfig:
    """How features are extracted (part of no hash: features do not depend on it, except amp)."""

    batch_size: Optional[int] = None  # null = 16 on CPU, 256 on CUDA
    num_workers: int = 0
    amp: bool = False  # bf16 autocast on CUDA
    channels_last: bool = False


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
class SubsetConfig:
    """A fixed part of each split (part of the feature-cache key)."""

    train: Optional[int] = None  # null = all rows; N = the first N rows, or N per class with per_class
    test: Optional[int] = None
    per_class: bool = False
    seed: int = 0  # seed of the per-class draw


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
