"""A saved head is checked when loaded, and imprint-bench-predict answers ordinary mistakes with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from imprint_bench import ImprintedHead
from imprint_bench.errors import ConfigError
from imprint_bench.model import ImprintedClassifier, predict_main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def saved_head(tmp_path, mixture) -> Path:
    return ImprintedHead.fit(mixture.x_train, mixture.y_train, "ours", class_names=[f"c{i}" for i in range(10)]).save(
        tmp_path / "head.safetensors", {"backbone": json.dumps({"name": "pixels", "source": "pixels"})})


def tamper(path: Path, out: Path, tensors=None, meta=None, drop=()) -> Path:
    with safe_open(str(path), framework="pt") as f:
        t = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        m = dict(f.metadata())
    t.update(tensors or {})
    m.update(meta or {})
    for key in drop:
        t.pop(key, None)
        m.pop(key, None)
    save_file(t, str(out), metadata=m)
    return out


@pytest.mark.parametrize(("change", "message"), [
    (lambda h: {"tensors": {"owner": torch.where(h.owner == 0, 99, h.owner)}}, "owner must assign every proxy"),
    (lambda h: {"meta": {"class_names": json.dumps(["a", "b"])}}, "owner must assign every proxy to one of the 2"),
    (lambda h: {"meta": {"class_names": json.dumps(["a"] * 10)}}, "field 'class_names' must be a list of distinct"),
    (lambda h: {"tensors": {"proxies": torch.full_like(h.proxies, float("nan"))}}, "NaN or Inf"),
    (lambda h: {"drop": ("proxies",)}, r"missing \['proxies'\]"),
    (lambda h: {"drop": ("method",)}, r"missing \['method'\]"),
    (lambda h: {"meta": {"agg": json.dumps({"name": "max", "m": -1, "distance": "inner_product",
                                            "weighting": "uniform", "extra": 1})}}, "field 'agg' must have the fields"),
    (lambda h: {"meta": {"norm_inf": "l3"}}, "unknown NORM kind 'l3'"),
    (lambda h: {"tensors": {"owner": h.owner.to(torch.int32)}}, "owner must be int64"),
])
def test_a_tampered_head_is_refused_on_load(tmp_path, saved_head, change, message):
    head = ImprintedHead.load(saved_head)
    bad = tamper(saved_head, tmp_path / "bad.safetensors", **change(head))
    with pytest.raises(ConfigError, match=message):
        ImprintedHead.load(bad)


def test_a_checkpoint_path_in_a_head_is_never_followed(tmp_path, saved_head):
    backbone = {"name": "resnet18", "source": "torchvision", "checkpoint": "/etc/passwd"}
    bad = tamper(saved_head, tmp_path / "ckpt.safetensors", meta={"backbone": json.dumps(backbone)})
    with pytest.raises(ConfigError, match="pass that weights file explicitly"):
        ImprintedClassifier.load(bad)


@pytest.mark.parametrize(("head", "image", "message"), [
    ("good", "missing.png", "cannot read image"),
    ("good", "notes.txt", "cannot read image"),
    ("garbage", "x.png", "is not a head file saved by imprint-bench"),
    ("folder", "x.png", "does not exist or is not a file"),
    ("missing", "x.png", "does not exist or is not a file"),
])
def test_predict_answers_ordinary_mistakes_with_one_line(tmp_path, saved_head, head, image, message):
    Image.new("L", (8, 8)).save(tmp_path / "x.png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "garbage").write_bytes(os.urandom(200))
    (tmp_path / "folder").mkdir()
    head_path = {"good": saved_head, "garbage": tmp_path / "garbage", "folder": tmp_path / "folder",
                 "missing": tmp_path / "nope.safetensors"}[head]
    with pytest.raises(SystemExit) as err:
        predict_main([str(head_path), str(tmp_path / image)])
    assert str(err.value).startswith("error: ") and message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_pixels_head_on_digits_predicts_grey_and_refuses_colour_clearly(tmp_path, capsys):
    from sklearn.datasets import load_digits

    head = tmp_path / "digits.safetensors"
    env = {**os.environ, "IMPRINT_BENCH_ROOT": str(tmp_path), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    out = subprocess.run([sys.executable, "-m", "imprint_bench", "dataset=digits", "backbone=pixels", "method=ours",
                          f"save_head={head}", "nc1=false"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    digits = load_digits()
    paths = []
    for i in range(10):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(np.rint(digits.images[i] * (255 / 16)).astype(np.uint8), mode="L").save(path)
        paths.append(path)
    predict_main([str(head), *map(str, paths)])
    predicted = [line.split("\t")[1] for line in capsys.readouterr().out.strip().splitlines()]
    model = ImprintedClassifier.load(head)
    assert sum(p == model.class_names[int(t)] for p, t in zip(predicted, digits.target[:10], strict=True)) >= 9
    Image.open(paths[0]).convert("RGB").save(tmp_path / "colour.png")
    with pytest.raises(SystemExit, match="give 192-d features but the head expects 64-d"):
        predict_main([str(head), str(tmp_path / "colour.png")])


def test_fit_takes_numpy_arrays(mixture):
    from_numpy = ImprintedHead.fit(mixture.x_train.numpy().astype(np.float64), mixture.y_train.numpy(), "qi")
    from_torch = ImprintedHead.fit(mixture.x_train, mixture.y_train, "qi")
    assert torch.allclose(from_numpy.proxies, from_torch.proxies)


@pytest.mark.slow
def test_efficientnet_lite_head_predicts_colour_and_grey_images(tmp_path, capsys):
    colours = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}
    for name, rgb in colours.items():
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (20 + i, 20), rgb).save(tmp_path / "photos" / name / f"{i}.png")
    head = tmp_path / "lite.safetensors"
    env = {**os.environ, "IMPRINT_BENCH_ROOT": str(tmp_path), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    out = subprocess.run([sys.executable, "-m", "imprint_bench", "dataset=image_folder",
                          f"dataset.root={tmp_path / 'photos'}", "backbone=efficientnet_lite0", "method=qi",
                          f"save_head={head}", "nc1=false"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    Image.new("RGB", (24, 24), colours["red"]).save(tmp_path / "red.png")
    Image.new("RGB", (24, 24), colours["green"]).convert("L").save(tmp_path / "grey.png")
    predict_main([str(head), str(tmp_path / "red.png"), str(tmp_path / "grey.png")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].endswith("\tred") and lines[1].split("\t")[1] in colours  # a grey image is read as RGB
