"""Layer resolution, listing, defaults and sweep layers on real architectures (random init)."""

from __future__ import annotations

import pytest
import timm
import torchvision

import cnnvis
from cnnvis.layers import resolve_layer, sweep_layers

DEFAULTS = [
    ("vgg16", 224, "features.29", 31),
    ("resnet50", 224, "layer4", 20),
    ("densenet121", 224, "features", 12),
    ("inception_v3", 299, "Mixed_7c", 18),
    ("mobilenet_v3_large", 224, "features", 17),
    ("convnext_tiny", 224, "features", 25),
    ("alexnet", 224, "features.11", 13),
]


@pytest.mark.parametrize(("name", "size", "default", "n_sweep"), DEFAULTS)
def test_default_layer_and_sweep_on_torchvision(name, size, default, n_sweep):
    kwargs = {"init_weights": False} if name == "inception_v3" else {}
    model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
    shape = (1, 3, size, size)
    assert cnnvis.default_layer(model, shape) == default
    assert len(sweep_layers(model, "all", shape)) == n_sweep


def test_default_model_architecture():
    model = timm.create_model("tf_efficientnet_lite0")
    assert cnnvis.default_layer(model) == "bn2"
    layers = sweep_layers(model)
    assert layers[0] == "conv_stem" and layers[-1] == "bn2" and "blocks.6.0" in layers


def test_list_layers_shapes_and_flags(tiny_cnn):
    infos = {i.name: i for i in cnnvis.list_layers(tiny_cnn, (1, 3, 16, 16))}
    assert infos["conv1"].output_shape == (1, 6, 16, 16)
    assert infos["relu2"].output_shape == (1, 8, 8, 8)
    assert infos["fc"].output_shape == (1, 5)
    assert infos["relu2"].default and not infos["conv2"].default
    assert infos["conv1"].sweep and not infos["fc"].sweep and not infos["pool"].sweep


def test_reused_module_is_reported_with_its_call_count():
    model = torchvision.models.resnet18().eval()
    infos = {i.name: i for i in cnnvis.list_layers(model)}
    assert infos["layer1.0.relu"].calls == 2


def test_wrong_layer_name_lists_closest(tiny_cnn):
    with pytest.raises(cnnvis.LayerError, match="did you mean: conv1"):
        resolve_layer(tiny_cnn, "conv_1")
    with pytest.raises(cnnvis.LayerError, match="did you mean"):
        cnnvis.explain(tiny_cnn, __import__("torch").randn(1, 3, 8, 8), "grad-cam", "relu3")


def test_sweep_patterns(tiny_cnn):
    assert sweep_layers(tiny_cnn, "relu*", (1, 3, 16, 16)) == ["relu1", "relu2"]
    assert sweep_layers(tiny_cnn, ["conv2"], (1, 3, 16, 16)) == ["conv2"]
    with pytest.raises(cnnvis.LayerError, match="no layer"):
        sweep_layers(tiny_cnn, "nothing*", (1, 3, 16, 16))


def test_no_spatial_layer_is_a_clear_error():
    import torch

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval()
    with pytest.raises(cnnvis.LayerError, match="no layer with a spatial"):
        cnnvis.explain(model, torch.randn(1, 3, 2, 2), "grad-cam")
    # pixel methods still work
    assert cnnvis.explain(model, torch.randn(1, 3, 2, 2), "gradient").map.shape == (1, 3, 2, 2)
