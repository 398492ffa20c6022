"""gradient-shap: exact values on a linear model (where every path point has the same
gradient), its identity with integrated gradients for one baseline, completeness, batches,
seeding, bad parameters, and Captum's GradientShap on the same baseline distribution."""

from __future__ import annotations

import pytest
import torch
from captum.attr import GradientShap
from torch import nn

import cnnvis
from cnnvis.methods.gradient_shap import draws

from conftest import TinyCNN

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class Linear(nn.Module):
    """y = W · flatten(x) + b: ∂y_c/∂x = W_c everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 6 * 6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@pytest.fixture()
def linear() -> Linear:
    torch.manual_seed(0)
    return Linear().double().eval()


@pytest.fixture()
def images() -> torch.Tensor:
    return torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def test_linear_model_is_the_weights_times_the_distance_to_the_drawn_baselines(linear, images):
    refs = torch.randn(5, 3, 6, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    e = cnnvis.explain(linear, images, "gradient-shap", target=[1, 3], baselines=refs, samples=7)
    which, _ = draws(7, 5, seed=0)
    drawn_mean = refs[which].mean(0)
    weights = linear.fc.weight.detach()[[1, 3]].view(2, 3, 6, 6)
    torch.testing.assert_close(e.map, weights * (images - drawn_mean), rtol=1e-12, atol=1e-12)


def test_one_baseline_gives_integrated_gradients(linear, images):
    black = torch.zeros(3, 6, 6, dtype=torch.float64)
    shap = cnnvis.explain(linear, images, "gradient-shap", baselines=black, samples=3)
    ig = cnnvis.explain(
        linear, images, "integrated-gradients", baseline=black.expand(2, -1, -1, -1), steps=4
    )
    torch.testing.assert_close(shap.map, ig.map, rtol=1e-10, atol=1e-12)
    assert max(shap.params["completeness_error"]) < 1e-9  # Σ attr = y(x) - y(x′)


def test_completeness_on_a_relu_network_within_the_monte_carlo_error():
    torch.manual_seed(0)
    model = TinyCNN().double().eval()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    black = torch.zeros(3, 16, 16, dtype=torch.float64)
    e = cnnvis.explain(model, x, "gradient-shap", baselines=black, samples=4000, batch_size=500)
    difference = e.params["score_difference"][0]
    assert abs(difference) > 1e-3
    assert e.params["completeness_error"][0] < 0.05 * abs(difference)


def test_a_batch_gives_the_per_image_maps_and_a_seed_the_same_map(tiny_cnn):
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    kwargs = {"samples": 6, "batch_size": 4, "target": [0, 2, 4]}
    batch = cnnvis.explain(tiny_cnn, x, "gradient-shap", **kwargs).map
    for i in range(3):
        one = cnnvis.explain(tiny_cnn, x[i : i + 1], "gradient-shap", samples=6, target=2 * i)
        torch.testing.assert_close(batch[i : i + 1], one.map, rtol=1e-5, atol=1e-7)
    again = cnnvis.explain(tiny_cnn, x, "gradient-shap", **kwargs).map
    assert torch.equal(batch, again)
    other = cnnvis.explain(tiny_cnn, x, "gradient-shap", seed=1, **kwargs).map
    assert not torch.equal(batch, other)


def test_named_baselines_and_noise(tiny_cnn):
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    e = cnnvis.explain(tiny_cnn, x, "gradient-shap", baselines="black,noise", noise=0.1, samples=4)
    assert e.map.shape == x.shape and torch.isfinite(e.map).all() and e.map.abs().sum() > 0
    assert e.params["baselines"] == "black,noise" and e.params["noise"] == 0.1


@pytest.mark.parametrize(
    "bad",
    [
        {"samples": 0},
        {"batch_size": -1},
        {"noise": -0.5},
        {"baselines": "black,grey"},
        {"baselines": ""},
        {"baselines": torch.zeros(2, 3, 5, 5)},
    ],
)
def test_bad_parameters_are_method_errors(tiny_cnn, bad):
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(cnnvis.MethodError, match="gradient-shap"):
        cnnvis.explain(tiny_cnn, x, "gradient-shap", **bad)


def test_agrees_with_captum_gradient_shap_on_the_same_baselines():
    """Both are Monte Carlo estimates of the same expectation (their draws differ): with many
    samples the maps agree up to the sampling error."""
    torch.manual_seed(0)
    model = TinyCNN().double().eval()
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(1, 3, 16, 16, generator=gen, dtype=torch.float64)
    refs = torch.randn(4, 3, 16, 16, generator=gen, dtype=torch.float64) * 0.5
    ours = cnnvis.explain(
        model, x, "gradient-shap", target=2, baselines=refs, samples=3000, batch_size=500
    ).map
    torch.manual_seed(0)
    theirs = GradientShap(model).attribute(x, refs, n_samples=3000, target=2)
    r = torch.corrcoef(torch.stack([ours.flatten(), theirs.flatten()]))[0, 1]
    assert r > 0.98, float(r)
    scale = float(theirs.abs().max())
    assert float((ours - theirs).abs().mean()) < 0.05 * scale
