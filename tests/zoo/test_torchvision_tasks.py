"""Tests for torchvision's detection, segmentation and video models by name (`weights=None`):
the task fact, no download of any weights, preprocessing, class names and outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cnnvis.errors import ModelError
from cnnvis.zoo import available_models, load_model, torchvision_preprocess, torchvision_tasks

DETECTION = [
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "retinanet_resnet50_fpn",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "ssd300_vgg16",
    "ssdlite320_mobilenet_v3_large",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
]
SEGMENTATION = [
    "fcn_resnet50",
    "fcn_resnet101",
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "deeplabv3_mobilenet_v3_large",
    "lraspp_mobilenet_v3_large",
]
VIDEO = ["r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "mvit_v2_s"]
VIDEO += ["swin3d_t", "swin3d_s", "swin3d_b"]


@pytest.fixture
def no_downloads(monkeypatch):
    """Any attempt to fetch torchvision weights fails the test."""
    from torchvision.models._api import WeightsEnum

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"tried to download {self.url}")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", refuse)


def test_every_named_model_has_its_task():
    tasks = torchvision_tasks()
    for names, task in [(DETECTION, "detection"), (SEGMENTATION, "segmentation"), (VIDEO, "video")]:
        assert {n: tasks[n] for n in names} == dict.fromkeys(names, task)
    assert tasks["resnet18"] == "classification" and "raft_small" not in tasks
    listed = {e["name"]: e["task"] for e in available_models()}
    assert listed["torchvision:ssd300_vgg16"] == "detection"
    assert listed["torchvision:lraspp_mobilenet_v3_large"] == "segmentation"
    assert listed["torchvision:swin3d_t"] == "video"
    assert listed["torchvision:vgg16"] == listed["default"] == "classification"


def test_the_guard_bites(no_downloads):
    """torchvision's own default downloads backbone weights; cnnvis passes weights_backbone=None."""
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    with pytest.raises(AssertionError, match="tried to download"):
        fasterrcnn_mobilenet_v3_large_320_fpn(weights=None)


@pytest.mark.parametrize(
    ("arch", "size"),
    [
        ("fasterrcnn_mobilenet_v3_large_320_fpn", 320),
        ("ssdlite320_mobilenet_v3_large", 320),
        ("retinanet_resnet50_fpn", 800),
        ("fcos_resnet50_fpn", 800),
        ("maskrcnn_resnet50_fpn", 800),
    ],
)
def test_detectors_build_offline_at_their_own_size(no_downloads, arch: str, size: int):
    model = load_model(f"torchvision:{arch}", weights=None)
    assert model.task == "detection" and model.weights is None and not model.module.training
    pre = model.preprocess
    assert (pre.resize_size, pre.crop_size) == (size, size)
    assert pre.mean == (0.0, 0.0, 0.0) and pre.std == (1.0, 1.0, 1.0)  # the model normalizes
    assert model.categories is not None and len(model.categories) == 91
    assert model.categories[1] == "person"
    assert torchvision_preprocess(arch) == pre


def test_a_detector_takes_a_list_and_returns_box_dicts(no_downloads):
    model = load_model("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn", weights=None)
    with torch.no_grad():
        out = model.module([torch.rand(3, 96, 128), torch.rand(3, 64, 64)])
    assert isinstance(out, list) and len(out) == 2
    assert set(out[0]) == {"boxes", "scores", "labels"}
    assert out[0]["boxes"].shape[1:] == (4,)


@pytest.mark.parametrize("arch", ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"])
def test_segmenters_build_offline(no_downloads, arch: str):
    model = load_model(f"torchvision:{arch}", weights=None)
    assert model.task == "segmentation"
    assert (model.preprocess.resize_size, model.preprocess.crop_size) == (520, 520)
    assert model.categories is not None and len(model.categories) == 21
    with torch.no_grad():
        out = model.module(torch.rand(1, 3, 64, 64))
    assert out["out"].shape == (1, 21, 64, 64)


def test_fcn_builds_offline(no_downloads):
    model = load_model("torchvision:fcn_resnet50", weights=None)
    assert model.task == "segmentation" and model.categories[15] == "person"


KINETICS_MEAN = (0.43216, 0.394666, 0.37645)


@pytest.mark.parametrize(
    ("arch", "crop", "mean"),
    [
        ("r3d_18", 112, KINETICS_MEAN),
        ("s3d", 224, KINETICS_MEAN),
        ("mvit_v2_s", 224, (0.45, 0.45, 0.45)),
        ("swin3d_t", 224, (0.485, 0.456, 0.406)),
    ],
)
def test_video_models_build_offline(no_downloads, arch: str, crop: int, mean: tuple):
    """Each with its weights' clip size and mean (they differ between the families)."""
    model = load_model(f"torchvision:{arch}", weights=None)
    assert model.task == "video" and model.preprocess.crop_size == crop
    assert model.categories is not None and len(model.categories) == 400
    assert model.preprocess.mean == pytest.approx(mean)


def test_r3d_forward_on_a_clip(no_downloads):
    model = load_model("torchvision:r3d_18", weights=None)
    with torch.no_grad():
        out = model.module(torch.rand(1, 3, 4, 32, 32))
    assert out.shape == (1, 400)


def test_a_detector_state_dict_file_round_trip(no_downloads, tmp_path: Path):
    source = load_model("torchvision:ssdlite320_mobilenet_v3_large", weights=None).module
    state = source.state_dict()
    path = tmp_path / "ssdlite.pth"
    # as a pretrained file has it: FrozenBatchNorm2d keeps no num_batches_tracked
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, path)
    model = load_model("torchvision:ssdlite320_mobilenet_v3_large", weights=path)
    assert model.task == "detection" and model.weights == str(path)
    loaded = model.module.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if "num_batches" not in k)
    torch.save({"backbone.nothing": torch.zeros(1)}, path)
    with pytest.raises(ModelError, match="default number of classes"):
        load_model("torchvision:ssdlite320_mobilenet_v3_large", weights=path)


def test_unknown_detector_name_suggests():
    with pytest.raises(ModelError, match="torchvision:fasterrcnn_resnet50_fpn"):
        load_model("torchvision:fasterrcnn_resnet50", weights=None)


def test_models_command_shows_and_filters_by_task(capsys):
    from cnnvis.cli import main

    assert main(["models", "--task", "detection"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    rows = {line[0]: line[1] for line in lines if line and line[0].startswith("torchvision:")}
    assert set(rows) == {f"torchvision:{n}" for n in [*DETECTION, "keypointrcnn_resnet50_fpn"]}
    assert set(rows.values()) == {"detection"}
    assert main(["models", "--filter", "offline:*", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert {e["name"]: e["task"] for e in entries} == {
        "offline:efficientnet_lite0": "classification",
        "offline:efficientnet_lite1": "classification",
        "offline:efficientnet_lite2": "classification",
        "offline:mobilenet_v2": "classification",
    }
