"""Feature cache: hit/miss, memo, keys, corruption recovery, concurrent extraction, DataLoader path, real backbone."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import multiprocessing
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from imprint_bench import features
from imprint_bench.data.image_loaders import DIGIT_NAMES
from imprint_bench.errors import ConfigError

DIGITS = {"kind": "digits", "name": "digits", "download": False, "mapping": None, "subset": None}
PIXELS = {"name": "pixels", "source": "pixels"}
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def fresh_memo():
    features.clear_memo()
    yield
    features.clear_memo()


@pytest.fixture
def extractions(monkeypatch) -> list[str]:
    """Records the label of every real extraction (the cache's miss path)."""
    calls: list[str] = []
    extract = features._extract

    def counting(request, *args):
        calls.append(request.label)
        return extract(request, *args)

    monkeypatch.setattr(features, "_extract", counting)
    return calls


def _extract(cache: Path, dataset: dict = DIGITS, backbone: dict = PIXELS, extract: dict | None = None):
    return features.extract_feature_set(dataset, backbone, extract or {}, cache, cache / "data", CPU)


def test_miss_writes_an_entry_then_hits_read_it(tmp_path, extractions, monkeypatch):
    first = _extract(tmp_path)
    assert len(extractions) == 1
    assert first.x_train.dtype == torch.float32 and first.y_train.dtype == torch.int64
    assert first.x_train.shape == (1438, 64) and first.x_test.shape == (359, 64)
    assert first.class_names == DIGIT_NAMES and first.source == "pixels features of digits"
    entry = tmp_path / "features" / first.key
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["arrays"]["train_x"]["shape"] == [1438, 64] and meta["arrays"]["train_x"]["dtype"] == "float32"
    assert meta["class_names"] == DIGIT_NAMES and set(meta["versions"]) >= {"torch", "timm"}
    assert meta["description"]["backbone"]["source"] == "pixels"
    mapped = np.load(entry / "test_y.npy", mmap_mode="r")
    np.testing.assert_array_equal(mapped, first.y_test.numpy())
    assert not list((tmp_path / "features").glob(".tmp-*"))

    features.clear_memo()
    second = _extract(tmp_path)
    assert len(extractions) == 1 and second.key == first.key
    torch.testing.assert_close(second.x_train, first.x_train, rtol=0, atol=0)

    monkeypatch.setattr(features, "_read_entry", lambda entry: pytest.fail("memo should answer"))
    assert torch.equal(_extract(tmp_path).y_test, first.y_test)
    assert features.fill_feature_cache(DIGITS, PIXELS, {}, tmp_path, tmp_path, CPU) == first.key


def test_composed_config_input_and_progress_without_a_terminal(tmp_path, compose_cfg, capfd, caplog):
    from imprint_bench.plan import plain

    cfg = compose_cfg("dataset=digits", "backbone=pixels", "dataset.subset.train=10", "dataset.subset.per_class=true")
    with caplog.at_level("INFO"):
        feature_set = features.extract_feature_set(plain(cfg.dataset), plain(cfg.backbone), plain(cfg.extract),
                                                   tmp_path, tmp_path, CPU)
    assert feature_set.x_train.shape == (100, 64) and feature_set.x_test.shape == (359, 64)
    assert "img/s" not in capfd.readouterr().err  # no progress-bar frames in a log that is not a terminal
    assert any("img/s" in r.getMessage() for r in caplog.records)  # one line per split instead
    unset_root = compose_cfg("dataset=image_folder")
    with pytest.raises(ConfigError, match=r"dataset.root must be set"):
        plain(unset_root.dataset)


def test_key_covers_what_changes_the_numbers(tmp_path):
    def key(dataset=DIGITS, backbone=PIXELS, extract=None, device=CPU) -> str:
        return features.plan_features(dataset, backbone, extract or {}, tmp_path, device).key

    base = key()
    assert key({**DIGITS, "name": "renamed", "download": True}) == base  # labels only
    assert key(extract={"amp": True, "batch_size": 7}) == base  # no bf16 on CPU; batching does not matter
    assert key(extract={"amp": True}, device=torch.device("cuda")) != base
    assert key({**DIGITS, "subset": {"train": 10}}) != base
    assert key({**DIGITS, "split_seed": 1}) != base
    assert key(backbone={**PIXELS, "resize": 4}) != base
    lite = {"name": "efficientnet_lite0", "source": "effnet_lite", "pretrained": True}
    assert len({key(backbone=lite), key(backbone={**lite, "pretrained": False}),
                key(backbone={**lite, "pretrained": False, "init_seed": 1})}) == 3  # fmt: skip
    checkpoint = tmp_path / "weights.pth"
    checkpoint.write_bytes(b"one")
    first = key(backbone={**lite, "checkpoint": str(checkpoint)})
    time.sleep(0.01)
    checkpoint.write_bytes(b"two")
    assert key(backbone={**lite, "checkpoint": str(checkpoint)}) != first


def test_corrupt_entries_are_detected_and_extracted_again(tmp_path, extractions, caplog):
    reference = _extract(tmp_path)
    entry = tmp_path / "features" / reference.key
    damages = {
        "truncated": lambda: (entry / "train_x.npy").write_bytes((entry / "train_x.npy").read_bytes()[:1000]),
        "flipped byte": lambda: _flip_last_byte(entry / "test_y.npy"),
        "no meta": lambda: (entry / "meta.json").unlink(),
    }
    for number, damage in enumerate(damages.values(), start=2):
        damage()
        features.clear_memo()
        caplog.clear()
        repaired = _extract(tmp_path)
        said = [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()]
        assert len(said) == 1, said  # one line, not a log line and a warning
        assert len(extractions) == number
        torch.testing.assert_close(repaired.x_train, reference.x_train, rtol=0, atol=0)
        assert torch.equal(repaired.y_test, reference.y_test)
    assert not list((tmp_path / "features").glob(".stale-*"))


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


def test_concurrent_threads_wait_for_one_extraction(tmp_path, extractions, monkeypatch):
    slow_extract = features._extract

    def slow(*args):
        time.sleep(0.5)
        return slow_extract(*args)

    monkeypatch.setattr(features, "_extract", slow)
    results = {}
    start = threading.Barrier(2)

    def job(name: str) -> None:
        start.wait()
        results[name] = _extract(tmp_path)

    threads = [threading.Thread(target=job, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(extractions) == 1
    assert torch.equal(results["a"].x_train, results["b"].x_train)


def _extract_in_child(cache: str, log: str, ready: str) -> None:
    """Subprocess body: say it is ready, then extract the digits pixels, logging any real extraction."""
    extract = features._extract

    def logged(*args):
        with open(log, "a") as handle:
            handle.write(f"child {os.getpid()}\n")
        return extract(*args)

    features._extract = logged
    Path(ready).touch()
    _extract(Path(cache))


@pytest.mark.slow
def test_concurrent_processes_wait_for_one_extraction(tmp_path, extractions, monkeypatch):
    """This process holds the entry's lock while extracting until a second process asks for the same key."""
    log, ready = tmp_path / "extractions.log", tmp_path / "child-ready"
    counted_extract = features._extract

    def extract_when_child_asks(*args):
        deadline = time.monotonic() + 120
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the child is now waiting on the lock
        return counted_extract(*args)

    monkeypatch.setattr(features, "_extract", extract_when_child_asks)
    child = multiprocessing.get_context("spawn").Process(
        target=_extract_in_child, args=(str(tmp_path), str(log), str(ready))
    )
    child.start()
    _extract(tmp_path)
    child.join(timeout=120)
    assert child.exitcode == 0 and ready.exists()
    assert len(extractions) == 1 and not log.exists()  # the child found the finished entry
    assert len([path for path in (tmp_path / "features").iterdir() if path.is_dir()]) == 1


def test_file_dataset_dataloader_workers_give_the_same_features(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for index in range(6):  # sizes differ: the transform gives them one
            pixels = rng.integers(0, 256, (20 + index, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / label / f"{index}.png")
    dataset = {"kind": "image_folder", "name": "mine", "root": str(tmp_path / "images"), "test_fraction": 0.5}
    backbone = {**PIXELS, "resize": 12, "crop": 10}
    single = _extract(tmp_path / "a", dataset, backbone, {"batch_size": 4, "num_workers": 0})
    workers = _extract(tmp_path / "b", dataset, backbone, {"batch_size": 5, "num_workers": 2})
    assert single.key == workers.key and single.x_train.shape == (6, 300)
    torch.testing.assert_close(single.x_train, workers.x_train, rtol=0, atol=0)

    with pytest.raises(ConfigError, match="give them one size"):
        _extract(tmp_path / "c", dataset, PIXELS, {"batch_size": 4})


@pytest.mark.slow
def test_efficientnet_lite0_on_mnist5k_real_pipeline(tmp_path):
    dataset = {"kind": "mnist5k", "name": "mnist5k", "subset": {"train": 2, "test": 1, "per_class": True, "seed": 0}}
    backbone = {"name": "efficientnet_lite0", "source": "effnet_lite", "pretrained": True}
    feature_set = _extract(tmp_path, dataset, backbone, {"batch_size": 16})
    assert feature_set.x_train.shape == (20, 1280) and feature_set.x_test.shape == (10, 1280)
    assert sorted(feature_set.y_test.tolist()) == list(range(10))
    assert bool((feature_set.x_train.norm(dim=1) > 0).all())


def test_non_finite_features_are_not_cached(tmp_path, monkeypatch):
    from imprint_bench.backbones import Backbone, backbone_preprocess

    class NaNModel(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return torch.full((len(images), 3), float("nan"))

    monkeypatch.setattr(
        features, "load_backbone", lambda cfg, device: Backbone("nan", NaNModel(), backbone_preprocess(cfg))
    )
    with pytest.raises(ConfigError, match="NaN/Inf features for 1438 train images"):
        _extract(tmp_path)
    assert not [path for path in (tmp_path / "features").iterdir() if path.is_dir()]
