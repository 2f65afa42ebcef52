"""A practitioner's path: imprint a head on an image folder, keep it, load it as a model, predict."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from imprint_bench.model import ImprintedClassifier, predict_main

ROOT = Path(__file__).resolve().parent.parent
COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}


def write_folder(root: Path, per_class: int = 12) -> None:
    rng = np.random.default_rng(0)
    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            noise = rng.integers(-25, 25, size=(20, 20, 3))
            Image.fromarray(np.clip(np.array(rgb) + noise, 0, 255).astype(np.uint8)).save(root / name / f"{i}.png")


def test_image_folder_to_saved_model(tmp_path, capsys):
    images = tmp_path / "photos"
    write_folder(images)
    head = tmp_path / "photos.safetensors"
    env = {**os.environ, "IMPRINT_BENCH_ROOT": str(tmp_path), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    out = subprocess.run([sys.executable, "-m", "imprint_bench", "dataset=image_folder", f"dataset.root={images}",
                          "backbone=pixels", "backbone.resize=8", "method=qi", f"save_head={head}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    model = ImprintedClassifier.load(head)
    assert sorted(model.class_names) == ["blue", "green", "red"]
    probe = [Image.new("RGB", (30, 30), COLOURS[c]) for c in ("green", "red", "blue")]
    assert model.predict_images(probe) == ["green", "red", "blue"]
    probe[0].save(tmp_path / "probe.png")
    predict_main([str(head), str(tmp_path / "probe.png")])
    assert capsys.readouterr().out.strip().endswith("\tgreen")


def test_predict_cli(tmp_path, capsys, mixture):
    from imprint_bench import ImprintedHead

    bare = ImprintedHead.fit(mixture.x_train, mixture.y_train, "qi").save(tmp_path / "bare.safetensors")
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    try:
        predict_main([str(bare), str(image)])
    except SystemExit as err:
        assert "no backbone metadata" in str(err)
    else:
        raise AssertionError("a head without backbone metadata must be refused")
