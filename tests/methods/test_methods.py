"""CAM methods against hand-derived values; the registry's contents."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnvis
from cnnvis.methods import get_method, list_methods

from conftest import HandNet

# x (1, 2, 2, 2); h_k = W1[k] . x; A = relu(h):
X0 = [[1.0, 0.0], [2.0, -1.0]]
X1 = [[0.0, 1.0], [1.0, 1.0]]
# A0 = [[1,0],[1,0]], A1 = [[2,1],[5,0]], A2 = [[1,1],[3,0]]
# class 0, W2[0] = [1, -3, 2]: CAM = A0 - 3 A1 + 2 A2 = [[-3, -1], [-8, 0]]
CAM_CLASS0 = [[-3.0, -1.0], [-8.0, 0.0]]
# class 1, W2[1] = [0.5, 1, -1]: CAM = 0.5 A0 + A1 - A2 = [[1.5, 0], [2.5, 0]]
CAM_CLASS1 = [[1.5, 0.0], [2.5, 0.0]]


@pytest.fixture
def spatial_input():
    return torch.tensor([X0, X1], dtype=torch.float64)[None]


@pytest.mark.parametrize(("target", "expected"), [(0, CAM_CLASS0), (1, CAM_CLASS1)])
def test_cam_and_grad_cam_hand_values(target, expected, spatial_input):
    model = HandNet().eval()
    cam = cnnvis.explain(model, spatial_input, "cam", layer="act", target=target)
    grad_cam = cnnvis.explain(model, spatial_input, "grad-cam", layer="act", target=target)
    assert cam.layer_map[0].flatten().tolist() == pytest.approx(sum(expected, []))
    # Grad-CAM's weights are W2[c] / (h*w): Grad-CAM = CAM / 4 here.
    quarter = [[v / 4 for v in row] for row in expected]
    assert grad_cam.layer_map[0].flatten().tolist() == pytest.approx(sum(quarter, []))
    assert cam.map.shape == (1, 2, 2)  # input resolution; here the layer's own


def test_cam_refuses_a_head_that_is_not_gap_linear():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(1),  # max, not average: CAM is not defined
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()
    with pytest.raises(cnnvis.MethodError, match="global average pooling"):
        cnnvis.explain(model, torch.randn(1, 3, 8, 8), "cam", layer="1")
    # grad-cam works on the same model and layer
    assert cnnvis.explain(model, torch.randn(1, 3, 8, 8), "grad-cam", layer="1").map.shape == (
        1,
        8,
        8,
    )


def test_cam_without_matching_linear_head():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Flatten(), nn.Linear(4 * 64, 3)).eval()
    with pytest.raises(cnnvis.MethodError, match="linear classifier"):
        cnnvis.explain(model, torch.randn(1, 3, 8, 8), "cam", layer="0")


def test_guided_grad_cam_is_guided_backprop_times_upsampled_grad_cam(tiny_cnn, tiny_input):
    r = cnnvis.explain_many(
        tiny_cnn, tiny_input, ["guided-backprop", "grad-cam", "guided-grad-cam"], "relu2"
    )
    gb = r[("guided-backprop", None)].map
    # the paper's order: ReLU at the layer's resolution, then bilinear upsampling
    layer_map = r[("grad-cam", "relu2")].layer_map.clamp(min=0)
    heat = torch.nn.functional.interpolate(layer_map[:, None], size=(16, 16), mode="bilinear")[:, 0]
    assert torch.allclose(r[("guided-grad-cam", "relu2")].map, gb * heat[:, None], atol=1e-7)


def test_cam_maps_are_upsampled_bilinearly(tiny_cnn, tiny_input):
    e = cnnvis.explain(tiny_cnn, tiny_input, "grad-cam", layer="relu2")
    assert e.layer_map.shape == (3, 8, 8) and e.map.shape == (3, 16, 16)
    expected = torch.nn.functional.interpolate(
        e.layer_map[:, None], size=(16, 16), mode="bilinear", align_corners=False
    )[:, 0]
    assert torch.allclose(e.map, expected)


def test_registry_has_the_tutorial_methods():
    names = [m.name for m in list_methods()]
    for name in ["gradient", "guided-backprop", "deconvnet", "cam", "grad-cam", "guided-grad-cam"]:
        assert name in names
    for info in list_methods():
        assert info.summary and info.paper and info.formula and info.passes
        assert info.kind in ("pixel", "cam")


def test_per_channel_methods_are_marked():
    """`per_channel`: one forward per channel of the layer (what the model-state audit limits to
    small architectures)."""
    assert {m.name for m in list_methods() if m.per_channel} == {"score-cam", "ablation-cam"}


def test_unknown_method_suggests_close_names():
    with pytest.raises(cnnvis.MethodError, match="grad-cam"):
        get_method("gradcam")
