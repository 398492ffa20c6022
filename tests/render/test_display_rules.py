"""The display rules: what a figure draws shows what the map says (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cnnvis
from cnnvis.explanation import Explanation
from cnnvis.methods import get_method
from cnnvis.postprocess import abs_max_grayscale, rescale
from cnnvis.render import (
    colormap,
    comparison_figure,
    explanation_figure,
    map_image,
    pixel_map_image,
)
from cnnvis.render.display import clip_percentile, main_mode, mode_label, signed_2d

from conftest import TinyCNN

H, W = 20, 30


def explanation(method: str, map: torch.Tensor, **kw) -> Explanation:
    fields = dict(
        targets=[285],
        target_names=["Egyptian cat"],
        probabilities=[0.63],
        images=torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(0)),
        model="vgg16",
    )
    fields.update(kw)
    return Explanation(method=method, map=map, **fields)


def centre_colour(name: str = "RdBu_r") -> list[float]:
    return np.round(np.array(colormap(name)(0.5)[:3]) * 255).tolist()


def panel(fig, title_part: str) -> np.ndarray:
    """The picture (H, W, 3) of the one panel whose title contains `title_part`."""
    found = [ax for ax in fig.axes if title_part in ax.get_title()]
    assert len(found) == 1, [ax.get_title() for ax in fig.axes]
    return np.asarray(found[0].get_images()[0].get_array(), dtype=float)


def with_outlier() -> torch.Tensor:
    """Gaussian noise of both signs, and one pixel a million times larger."""
    m = torch.randn(1, 3, H, W, generator=torch.Generator().manual_seed(3))
    m[0, :, 5, 5] = 1e6
    m[0, :, 6, 6] = -1e6
    return m


def test_the_registry_says_which_maps_are_signed():
    signed = {"occlusion", "integrated-gradients", "gradient-x-input", "gradient-shap"}
    for name in signed:
        assert get_method(name).sign == "signed" and get_method(name).signed
    assert get_method("rise").sign == "mean-relative"
    for name in ("gradient", "guided-backprop", "deconvnet", "guided-grad-cam"):
        assert get_method(name).sign == "magnitude" and not get_method(name).signed
    m = torch.randn(1, 3, H, W)
    assert main_mode(explanation("occlusion", m)) == "signed"
    assert main_mode(explanation("gradient", m)) == "gray"
    assert mode_label(explanation("gradient", m), "gray") == "|map|"
    assert main_mode(explanation("smoothgrad", m, params={"base": "integrated-gradients"})) == (
        "signed"
    )
    assert main_mode(explanation("smoothgrad", m)) == "gray"  # its default base: gradient
    assert main_mode(explanation("my-own-method", m)) == "gray"  # unknown: |map|


def test_a_signed_maps_zero_is_the_colormaps_centre_colour():
    m = torch.zeros(1, 3, H, W)
    m[0, :, 2:5, 2:5] = 1.0  # for the class
    m[0, :, 12:15, 20:25] = -0.5  # against it
    e = explanation("integrated-gradients", m)
    rgb = np.asarray(map_image(e, mode="signed"))
    assert rgb[10, 10].tolist() == centre_colour()
    assert rgb[3, 3, 0] > rgb[3, 3, 2] and rgb[13, 22, 2] > rgb[13, 22, 0]  # red +, blue −
    fig = comparison_figure([e])  # the comparison draws the signed map, titled so
    shown = panel(fig, "integrated-gradients (signed)")
    assert np.abs(shown[10, 10] - np.array(colormap("RdBu_r")(0.5)[:3])).max() < 1e-6


def test_the_comparison_does_not_show_a_negative_region_as_the_brightest():
    """Issue 17: occlusion's |map| drew a strongly negative region as its brightest blob."""
    m = torch.zeros(1, 3, H, W)
    m[0, :, 4:8, 4:8] = -3.0  # the strongest value is against the class
    m[0, :, 12:16, 20:24] = 1.0
    shown = panel(comparison_figure([explanation("occlusion", m)]), "occlusion")
    negative, positive = shown[6, 6], shown[14, 22]
    assert negative[2] > negative[0] and positive[0] > positive[2]  # blue, red


def test_percentile_clipping_shows_the_rest_of_a_map_with_one_outlier():
    m = with_outlier()
    old = rescale(m, "pos")  # the tutorial's max-scaling: all but the outlier black
    assert (old > 1 / 255).float().mean() < 0.01
    for mode in ("pos", "neg", "all", "gray"):
        rgb = np.asarray(pixel_map_image(m[0], mode))
        lit = (rgb.max(axis=2) > 10).mean()
        floor = 0.35 if mode in ("pos", "neg") else 0.9  # about half of a random map is > 0
        assert lit > floor, (mode, lit)
    signed = np.asarray(pixel_map_image(m[0], "signed", "signed")).astype(int)
    away = np.abs(signed - np.array(centre_colour())).max(axis=2) > 10
    assert away.mean() > 0.8
    clipped = clip_percentile(m)
    assert clipped.abs().max() == 1.0 and clipped[0, 0, 5, 5] == 1.0 and clipped[0, 0, 6, 6] == -1


def test_the_raw_map_stays_raw():
    m = with_outlier()
    e = explanation("occlusion", m.clone())
    comparison_figure([e])
    explanation_figure([e])
    map_image(e, mode="signed")
    assert torch.equal(e.map, m)


def test_rise_is_shown_relative_to_its_expected_score():
    # a RISE map: the expected score when a pixel is kept, all positive, a large constant
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    bump = torch.exp(-((yy - 5.0) ** 2 + (xx - 8.0) ** 2) / 18.0)
    m = (0.6 + 0.05 * bump).expand(1, 3, H, W).contiguous()
    e = explanation("rise", m)
    values = signed_2d(m, get_method("rise").sign)
    assert abs(float(values.mean())) < 1e-6  # zero mean over the image
    rgb = np.asarray(map_image(e, mode="signed")).astype(int)
    red = (rgb[..., 0] - rgb[..., 2]) > 30
    blue = (rgb[..., 2] - rgb[..., 0]) > 5  # slightly below the mean: light blue
    assert red[5, 8] and blue[18, 28]  # above its mean red, below blue: not one red field
    assert 0.01 < red.mean() < 0.5 and blue.mean() > 0.3
    fig = explanation_figure([e])
    assert any("rise (map − mean)" in ax.get_title() for ax in fig.axes)
    neg = panel(fig, "rise (below mean)")  # not blank
    assert (neg.max(axis=2) > 0.05).mean() > 0.3


def test_pos_and_neg_panels_are_not_all_black_on_a_map_with_both_signs():
    e = explanation("guided-backprop", with_outlier())
    fig = explanation_figure([e])
    for mode in ("pos", "neg"):
        shown = panel(fig, f"guided-backprop ({mode})")
        assert (shown.max(axis=2) > 0.05).mean() > 0.35, mode
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[1:5] == [
        "guided-backprop (all)",
        "guided-backprop (pos)",
        "guided-backprop (neg)",
        "guided-backprop (|map|)",
    ]  # the tutorial's layout, the |map| view labelled as such


class BatchNormNet(nn.Module):
    """conv-BN-relu-GAP-linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


class DepthwiseNet(nn.Module):
    """conv-relu-depthwise conv-relu-GAP-linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.dw(torch.relu(self.conv(x)))).mean(dim=(2, 3)))


def footer(fig) -> str:
    return "\n".join(t.get_text() for t in fig.texts)


def test_the_deconvnet_note_appears_for_a_batchnorm_network_only():
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    results = cnnvis.explain_many(BatchNormNet().eval(), x, ["deconvnet", "gradient"])
    deconv, grad = results[("deconvnet", None)], results[("gradient", None)]
    assert any("deconvnet" in n and "BatchNorm" in n for n in deconv.notes)
    assert not grad.notes  # the note is the method's, not the model's
    fig = explanation_figure([deconv, grad])
    assert "unrelated to the class" in footer(fig) and "BatchNorm" in footer(fig)
    assert "unrelated to the class" in footer(comparison_figure([deconv, grad]))
    plain = cnnvis.explain(TinyCNN().eval(), x, "deconvnet")
    assert not plain.notes and "unrelated" not in footer(explanation_figure(plain))
    depthwise = cnnvis.explain(DepthwiseNet().eval(), x, "deconvnet")
    assert any("depthwise convolutions" in n for n in depthwise.notes)


@pytest.mark.parametrize("name", ["torchvision:resnet18", "default"])
def test_random_weights_are_said_in_the_figure_title(name: str):
    lm = cnnvis.load_model(name, weights=None)
    assert lm.random_weights
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    e = cnnvis.explain(lm, x, "gradient")
    assert e.random_weights and e[0].random_weights
    assert "random weights" in explanation_figure(e).get_suptitle()
    assert "random weights" in comparison_figure([e]).get_suptitle()
    trained = cnnvis.explain(TinyCNN().eval(), torch.rand(1, 3, 16, 16), "gradient")
    assert "random weights" not in explanation_figure(trained).get_suptitle()


def test_clipping_is_zero_safe():
    for m in (torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), float("nan"))):
        assert clip_percentile(m).eq(0).all()
    sparse = torch.zeros(1, 100)
    sparse[0, 7] = -4.0  # under 1% non-zero: the maximum replaces the percentile
    assert clip_percentile(sparse)[0, 7] == -1.0
    assert abs_max_grayscale(torch.zeros(1, 3, 2, 2)).eq(0).all()
