"""kernel-shap and lime: the same draws as Captum's KernelShap / Lime from the same seed, so
the same maps (Lime with Captum's least-squares surrogate; its default Lasso is not ours),
Shapley values exact on an additive model, batches, seeds and bad parameters."""

from __future__ import annotations

import pytest
import torch
from captum._utils.models.linear_model import SkLearnLinearRegression
from captum.attr import KernelShap, Lime
from torch import nn

import cnnvis
from cnnvis.methods._superpixels import feature_mask

from conftest import TinyCNN

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]).double())[0, 1])


@pytest.fixture()
def model() -> nn.Module:
    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture()
def x() -> torch.Tensor:
    noise = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    return torch.nn.functional.interpolate(noise, size=16, mode="bilinear")


@pytest.mark.parametrize("method", ["kernel-shap", "lime"])
def test_same_draws_same_map_as_captum(model, x, method):
    ours = cnnvis.explain(
        model, x, method, target=[1, 2], segments=12, samples=100, seed=5, batch_size=16
    )
    mask = feature_mask(x, "slic", segments=12, compactness=10.0, cell=16, method="t")
    assert min(ours.params["features"]) >= 6
    for i, target in enumerate([1, 2]):
        torch.manual_seed(5)  # Captum draws from the global generator: seeded alike
        explainer = (
            KernelShap(model)
            if method == "kernel-shap"
            else Lime(model, interpretable_model=SkLearnLinearRegression())
        )
        theirs = explainer.attribute(
            x[i : i + 1], target=target, feature_mask=mask[i : i + 1, None], n_samples=100
        )
        assert corr(ours.map[i], theirs) >= 0.999
        torch.testing.assert_close(ours.map[i : i + 1], theirs, rtol=1e-4, atol=1e-5)


def test_kernel_shap_is_exact_on_an_additive_model():
    """y = Σ w ⊙ x: the Shapley value of a feature is its own contribution Σ_{p∈S} w_p x_p."""
    weight = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 1)).eval()
    with torch.no_grad():
        model[1].weight.copy_(weight.flatten()[None])
    x = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(4))
    got = cnnvis.explain(model, x, "kernel-shap", target=0, features="grid", cell=2, samples=40)
    contribution = (weight * x).view(2, 2, 2, 2).sum((1, 3))  # per 2x2 cell
    expected = contribution.repeat_interleave(2, 0).repeat_interleave(2, 1)[None, None]
    torch.testing.assert_close(got.map, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["kernel-shap", "lime"])
def test_batches_and_seeds(model, x, method):
    kw = {"features": "grid", "cell": 4, "samples": 30}
    batch = cnnvis.explain(model, x, method, target=[1, 2], batch_size=7, **kw).map
    singles = [
        cnnvis.explain(model, x[i : i + 1], method, target=t, **kw).map for i, t in [(0, 1), (1, 2)]
    ]
    torch.testing.assert_close(batch, torch.cat(singles))
    other = cnnvis.explain(model, x, method, target=[1, 2], seed=9, **kw).map
    assert not torch.allclose(batch, other)


def test_bad_parameters(model, x):
    with pytest.raises(cnnvis.MethodError, match="samples"):
        cnnvis.explain(model, x, "kernel-shap", target=0, samples=0)
    with pytest.raises(cnnvis.MethodError, match="kernel_width"):
        cnnvis.explain(model, x, "lime", target=0, kernel_width=0.0)
