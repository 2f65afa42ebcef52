"""Image datasets: ImageNet d-in-1 remaps, offline real data, image folders, subsets, mappings, missing-data errors."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import ImageNetInfo

from imprint_bench import features
from imprint_bench.config import config_dir, group_config
from imprint_bench.data import imagenet
from imprint_bench.data.containers import ImageArray, ImageFiles
from imprint_bench.data.image_loaders import DEBIAN_FASHION_MNIST
from imprint_bench.data.images import DATASET_KINDS, dataset_fingerprint, load_image_dataset, prepare_image_dataset
from imprint_bench.data.mappings import mapping_name
from imprint_bench.data.subsets import Subset
from imprint_bench.errors import ConfigError

CONF = config_dir() / "dataset"
PIXELS_8 = {"name": "pixels", "source": "pixels", "resize": 8, "crop": 8}
NOT_MINE = {"features.yaml", "synthetic.yaml"}


def dataset_cfg(name: str, **overrides) -> dict:
    """The composed dataset ``name`` (its YAML over its base schema) as a plain dict, with overrides."""
    return {**group_config("dataset", name), **overrides}


def test_dataset_configs_name_known_kinds_and_compose(compose_cfg):
    for path in sorted(set(CONF.glob("*.yaml")) - {CONF / name for name in NOT_MINE}):
        cfg = compose_cfg(f"dataset={path.stem}").dataset  # composed: a config may extend another one
        assert cfg.kind in DATASET_KINDS, path.name
        assert {"name", "download", "subset", "mapping"} <= set(cfg.keys()), path.name
        assert Subset.from_cfg(cfg.subset).is_full != path.stem.endswith("_6k"), path.name
    cfg = compose_cfg("dataset=combidigits")
    assert cfg.dataset.name == "CombiDigits" and mapping_name(cfg.dataset) == "combined"
    assert [compose_cfg(f"dataset={name}").dataset.name for name in ("mnist", "fashion_mnist", "cifar10")] == [
        "MNIST",
        "FashionMNIST",
        "CIFAR-10",
    ]


# --------------------------------------------------------------------------------------------- ImageNet


def test_imagenet_pools_and_checked_mappings():
    assert imagenet.shuffled_pool(0)[:13] == [214, 923, 969, 493, 693, 188, 143, 940, 402, 882, 47, 689, 3]
    focus = imagenet.focus_classes()
    assert len(focus) == 145 and {30, 32, 104, 344, 665} <= set(focus)
    map1 = imagenet.d_in_1_mapping("map1-0")
    assert map1 == {214: 0, 47: 1, 528: 2, 496: 3, 723: 4, 97: 5, 532: 6, 782: 7, 412: 8, 992: 9}
    map2 = imagenet.d_in_1_mapping("map2-0")
    assert {k: v for k, v in map2.items() if k not in map1} == {
        923: 0, 689: 1, 32: 2, 253: 3, 109: 4, 665: 5, 684: 6, 642: 7, 9: 8, 373: 9,
    }  # fmt: skip
    for variant in range(10):  # mappings are nested and draw from the focus classes
        for merged in range(1, 10):
            smaller = imagenet.d_in_1_mapping(f"map{merged}-{variant}")
            larger = imagenet.d_in_1_mapping(f"map{merged + 1}-{variant}")
            assert smaller.items() <= larger.items() and set(larger) <= set(focus)
        assert Counter(imagenet.d_in_1_mapping(f"map10-{variant}").values()) == dict.fromkeys(range(10), 10)
    assert imagenet.d_in_1_class_names("map2-0")[0] == "+".join(
        ImageNetInfo().index_to_description(c).split(",")[0] for c in (214, 923)
    )
    for bad in ("map0-0", "map11-0", "map1-10", "map1", "combined"):
        with pytest.raises(ConfigError, match="valid: map"):
            imagenet.parse_mapping(bad)


def _write_png(path: Path, value: int, size: tuple[int, int] = (10, 12), mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 255 - value, value // 2)).save(path)


@pytest.fixture
def fake_imagenet(tmp_path) -> Path:
    """One tiny PNG per focus class in train/ and val/ (class folders named by wnid)."""
    wnids = ImageNetInfo().label_names()
    root = tmp_path / "imagenet"
    for index in imagenet.focus_classes():
        _write_png(root / "train" / wnids[index] / "a.png", index % 256)
        _write_png(root / "val" / wnids[index] / "b.png", (index * 7) % 256)
    return root


def test_imagenet_mappings_share_one_extraction(fake_imagenet, tmp_path, monkeypatch):
    cfg = dataset_cfg("imagenet_d_in_1", root=str(fake_imagenet))
    images = prepare_image_dataset(cfg, tmp_path)
    assert images.class_names == imagenet.d_in_1_class_names("map1-0")
    assert sorted(images.train.labels.tolist()) == list(range(10)) and len(images.test) == 10

    calls = []
    extract = features._extract
    monkeypatch.setattr(features, "_extract", lambda *args: calls.append(args) or extract(*args))
    cache = tmp_path / "cache"
    map1 = features.extract_feature_set(cfg, PIXELS_8, {}, cache, tmp_path, torch.device("cpu"))
    map2 = features.extract_feature_set({**cfg, "mapping": "map2-0"}, PIXELS_8, {}, cache, tmp_path, "cpu")
    assert len(calls) == 1  # the 145 focus classes are embedded once, both mappings are views of them
    assert map1.key != map2.key and map1.x_train.shape == (10, 192) and map2.x_train.shape == (20, 192)
    assert Counter(map2.y_test.tolist()) == dict.fromkeys(range(10), 2)
    assert map2.class_names == imagenet.d_in_1_class_names("map2-0")

    subset = {**cfg, "mapping": "map2-0", "subset": {"train": 1, "test": None, "per_class": True, "seed": 0}}
    small = features.extract_feature_set(subset, PIXELS_8, {}, cache, tmp_path, "cpu")
    assert len(calls) == 2 and small.x_train.shape == (10, 192)  # a subset extracts only its own images
    assert torch.equal(small.y_train.sort().values, torch.arange(10))

    with pytest.raises(ConfigError, match="ImageNet train split incomplete"):
        load_image_dataset(dataset_cfg("imagenet_d_in_1"), tmp_path / "nothing")
    with pytest.raises(ConfigError, match="needs dataset.mapping"):
        mapping_name({**cfg, "mapping": None})


# --------------------------------------------------------------------------------------------- offline data


def test_mnist5k_is_a_fixed_stratified_split():
    dataset = load_image_dataset(dataset_cfg("mnist5k"), Path("/nonexistent"))
    assert (len(dataset.train), len(dataset.test)) == (4000, 1000)
    assert Counter(dataset.train.labels.tolist()) == dict.fromkeys(range(10), 400)
    assert Counter(dataset.test.labels.tolist()) == dict.fromkeys(range(10), 100)
    part = dataset.train.parts[0]
    assert isinstance(part, ImageArray) and part.images.shape == (4000, 1, 28, 28)
    assert part.images.dtype == torch.uint8 and int(part.images.max()) == 255
    again = load_image_dataset(dataset_cfg("mnist5k"), Path("/nonexistent"))
    assert torch.equal(part.images, again.train.parts[0].images)
    assert set(dataset.train.labels[:100].tolist()) == set(range(10))  # shuffled: "first N" mixes classes


def test_subsets_are_stratified_and_deterministic():
    subset = {"train": 30, "test": 5, "per_class": True, "seed": 3}
    first = prepare_image_dataset(dataset_cfg("digits", subset=subset), Path("."))
    again = prepare_image_dataset(dataset_cfg("digits", subset=subset), Path("."))
    other = prepare_image_dataset(dataset_cfg("digits", subset={**subset, "seed": 4}), Path("."))
    assert Counter(first.train.labels.tolist()) == dict.fromkeys(range(10), 30)
    assert Counter(first.test.labels.tolist()) == dict.fromkeys(range(10), 5)
    assert torch.equal(first.train.parts[0].images, again.train.parts[0].images)
    assert not torch.equal(first.train.parts[0].images, other.train.parts[0].images)

    full = load_image_dataset(dataset_cfg("digits"), Path("."))
    assert (len(full.train), len(full.test)) == (1438, 359)
    test_counts, all_counts = Counter(full.test.labels.tolist()), Counter(np.r_[full.train.labels, full.test.labels])
    assert all(abs(test_counts[label] - 0.2 * all_counts[label]) <= 1 for label in range(10))
    head = prepare_image_dataset(dataset_cfg("digits", subset={"train": 100}), Path("."))
    assert len(head.train) == 100 and len(head.test) == 359
    assert torch.equal(head.train.parts[0].images, full.train.parts[0].images[:100])

    for bad in ({"train": 0}, {"train": "all"}, {"tran": 5}):
        with pytest.raises(ConfigError, match="subset"):
            Subset.from_cfg(bad)


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="needs apt-get install dataset-fashion-mnist")
def test_fashion_mnist_from_the_debian_package(tmp_path):
    dataset = load_image_dataset(dataset_cfg("fashion_mnist_debian"), tmp_path)
    assert (len(dataset.train), len(dataset.test)) == (60000, 10000)
    assert dataset.train.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert dataset.test.labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert dataset.class_names[0] == "T-shirt/top"
    fallback = load_image_dataset(dataset_cfg("fashion_mnist"), tmp_path / "empty")  # torchvision root lacks it
    assert torch.equal(fallback.test.parts[0].images, dataset.test.parts[0].images)


def test_missing_data_lists_the_ways_to_provide_it(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_image_dataset(dataset_cfg("mnist"), tmp_path)
    for hint in (str(tmp_path / "MNIST" / "raw"), "paths.data_root", "dataset.download=true", "mnist5k"):
        assert hint in str(error.value)
    with pytest.raises(ConfigError, match="apt-get install dataset-fashion-mnist"):
        load_image_dataset(dataset_cfg("fashion_mnist_debian", root=str(tmp_path)), tmp_path)
    for name in ("cifar10", "cifar100", "svhn", "usps", "mnist_m"):
        with pytest.raises(ConfigError, match="not found.*Ways to provide it"):
            load_image_dataset(dataset_cfg(name), tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        load_image_dataset(dataset_cfg("combidigits"), tmp_path)


# --------------------------------------------------------------------------------------------- folders, concat


def test_image_folder_single_folder_is_split_stratified(tmp_path):
    root = tmp_path / "pets"
    for label, name in enumerate(["cat", "dog", "emu"]):
        for index in range(10):
            _write_png(root / name / f"{index}.png", 20 * label + index, mode="L" if index % 2 else "RGB")
    (root / "cat" / "notes.txt").write_text("not an image")
    cfg = dataset_cfg("image_folder", root=str(root), test_fraction=0.3)
    dataset = load_image_dataset(cfg, tmp_path)
    assert dataset.class_names == ["cat", "dog", "emu"]
    assert Counter(dataset.test.labels.tolist()) == dict.fromkeys(range(3), 3)
    assert isinstance(dataset.train.parts[0], ImageFiles) and len(dataset.train) == 21
    assert load_image_dataset(cfg, tmp_path).train.parts[0].files == dataset.train.parts[0].files

    feature_set = features.extract_feature_set(cfg, PIXELS_8, {"batch_size": 4}, tmp_path / "cache", tmp_path, "cpu")
    assert feature_set.x_train.shape == (21, 192) and feature_set.class_names == ["cat", "dog", "emu"]
    before = dataset_fingerprint(cfg, tmp_path)
    _write_png(root / "emu" / "new.png", 3)
    assert dataset_fingerprint(cfg, tmp_path) != before  # new images → new cache key


def test_image_folder_with_train_and_test_folders(tmp_path):
    for split, count in (("train", 4), ("val", 2)):
        for name in ("a", "b"):
            for index in range(count):
                _write_png(tmp_path / "data" / split / name / f"{index}.jpg", 40 * index)
    dataset = load_image_dataset(dataset_cfg("image_folder", root=str(tmp_path / "data")), tmp_path)
    assert (len(dataset.train), len(dataset.test), dataset.class_names) == (8, 4, ["a", "b"])
    assert dataset.test.parts[0].files[0] == "val/a/0.jpg"
    _write_png(tmp_path / "data" / "val" / "c" / "0.jpg", 1)
    with pytest.raises(ConfigError, match="classes missing from"):
        load_image_dataset(dataset_cfg("image_folder", root=str(tmp_path / "data")), tmp_path)
    with pytest.raises(ConfigError, match="needs dataset.root"):
        load_image_dataset(dataset_cfg("image_folder", root=None), tmp_path)


def _write_fake_digit_files(root: Path, n_train: int = 20, n_test: int = 10) -> None:
    """Tiny stand-ins in the on-disk formats torchvision's MNIST and USPS and the liyxi MNIST-M release use."""
    import bz2

    rng = np.random.default_rng(0)
    (root / "MNIST" / "raw").mkdir(parents=True)
    (root / "MNISTM" / "processed").mkdir(parents=True)
    (root / "usps").mkdir()
    for split, prefix, usps_name, count in (
        ("train", "train", "usps.bz2", n_train),
        ("test", "t10k", "usps.t.bz2", n_test),
    ):
        labels = np.arange(count) % 10
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        (root / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte").write_bytes(
            np.array([2051, count, 28, 28], ">i4").tobytes() + images.tobytes()
        )
        (root / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte").write_bytes(
            np.array([2049, count], ">i4").tobytes() + labels.astype(np.uint8).tobytes()
        )
        colour = torch.from_numpy(rng.integers(0, 256, (count, 28, 28, 3), dtype=np.uint8))
        torch.save((colour, torch.from_numpy(labels)), root / "MNISTM" / "processed" / f"mnist_m_{split}.pt")
        lines = [
            f"{label + 1} " + " ".join(f"{i + 1}:{value:.4f}" for i, value in enumerate(rng.uniform(-1, 1, 256)))
            for label in labels
        ]
        (root / "usps" / usps_name).write_bytes(bz2.compress("\n".join(lines).encode()))


def test_torchvision_loaders_and_combidigits_style_concat(tmp_path):
    _write_fake_digit_files(tmp_path)
    mnist = load_image_dataset(dataset_cfg("mnist"), tmp_path)
    assert mnist.train.parts[0].images.shape == (20, 1, 28, 28) and mnist.test.labels.tolist() == list(range(10))
    mnist_m = load_image_dataset(dataset_cfg("mnist_m"), tmp_path)
    assert mnist_m.train.parts[0].images.shape == (20, 3, 28, 28)
    usps = load_image_dataset(dataset_cfg("usps"), tmp_path)
    assert usps.test.parts[0].images.shape == (10, 1, 16, 16) and usps.test.labels.tolist() == list(range(10))

    cfg = dataset_cfg("combidigits", members=["mnist", "mnist_m", "usps"])
    combined = features.extract_feature_set(cfg, {**PIXELS_8, "resize": 16, "crop": 16}, {}, tmp_path, tmp_path, "cpu")
    assert combined.x_train.shape == (60, 3 * 16 * 16)  # grey members become RGB next to MNIST-M
    assert combined.class_names == [str(digit) for digit in range(10)]
    assert Counter(combined.y_test.tolist()) == dict.fromkeys(range(10), 3)
    with pytest.raises(ConfigError, match="different sizes"):  # 28 px and 16 px images need a common size
        features.extract_feature_set(cfg, {**PIXELS_8, "resize": None, "crop": None}, {}, tmp_path, tmp_path, "cpu")


def test_concat_offsets_labels_and_combined_mapping_merges_them():
    cfg = {"kind": "concat", "name": "two digits", "members": ["digits", "mnist5k"], "mapping": None}
    dataset = prepare_image_dataset(cfg, Path("."))
    assert dataset.class_names[:2] == ["digits/0", "digits/1"] and dataset.class_names[10] == "mnist5k/0"
    assert set(dataset.train.labels.tolist()) == set(range(20)) and len(dataset.train.parts) == 2
    combined = prepare_image_dataset({**cfg, "mapping": "combined"}, Path("."))
    assert combined.class_names == [str(digit) for digit in range(10)]
    assert Counter(combined.test.labels.tolist())[0] == 36 + 100
    np.testing.assert_array_equal(combined.train.labels, dataset.train.labels % 10)
    with pytest.raises(ConfigError, match="mapping=combined merges the members of a concat"):
        mapping_name({"kind": "mnist", "mapping": "combined"})
    with pytest.raises(ConfigError, match="unknown dataset.mapping"):
        mapping_name({"kind": "mnist", "mapping": "map1-0"})
