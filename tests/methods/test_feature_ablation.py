"""feature-ablation: agreement with Captum's FeatureAblation on the same feature mask (SLIC
superpixels, a grid, a given mask), exact values on a linear model, batches and bad masks."""

from __future__ import annotations

import pytest
import torch
from captum.attr import FeatureAblation
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
    """Smooth pictures (SLIC finds one segment in white noise)."""
    noise = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    return torch.nn.functional.interpolate(noise, size=16, mode="bilinear")


@pytest.mark.parametrize(
    ("features", "extra"), [("slic", {"segments": 12}), ("grid", {"cell": 4})], ids=str
)
@pytest.mark.parametrize("batch_size", [64, 5])
def test_agrees_with_captum_on_the_same_mask(model, x, features, extra, batch_size):
    ours = cnnvis.explain(
        model, x, "feature-ablation", target=[1, 2], features=features, batch_size=batch_size,
        **extra,
    )  # fmt: skip
    mask = feature_mask(
        x, features, segments=extra.get("segments", 50), compactness=10.0,
        cell=extra.get("cell", 16), method="t",
    )  # fmt: skip
    theirs = FeatureAblation(model).attribute(x, target=[1, 2], feature_mask=mask[:, None])
    assert corr(ours.map, theirs) >= 0.999
    torch.testing.assert_close(ours.map, theirs, rtol=1e-4, atol=1e-5)
    assert ours.params["features"] == (mask.flatten(1).amax(1) + 1).tolist()
    assert min(ours.params["features"]) >= 6


def test_linear_model_by_hand():
    """y = Σ w ⊙ x: ablating a feature to zero drops Σ_{p∈S} w_p x_p, spread over S."""
    weight = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(3))
    model = nn.Sequential(nn.Flatten(), nn.Linear(32, 1, bias=False)).eval()
    with torch.no_grad():
        model[1].weight.copy_(weight.flatten()[None])
    x = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(4))
    labels = torch.tensor([[0, 0, 1, 1]] * 2 + [[2, 2, 2, 7]] * 2)
    got = cnnvis.explain(model, x, "feature-ablation", target=0, features=labels).map
    contribution = weight * x
    expected = torch.zeros_like(x)
    for label in labels.unique():
        where = (labels == label).expand_as(x)
        expected[where] = contribution[where].sum()
    torch.testing.assert_close(got, expected)


def test_bad_masks_are_refused(model, x):
    for bad in (torch.zeros(5, 5, dtype=torch.long), torch.zeros(16, 16)):
        with pytest.raises(cnnvis.MethodError, match="feature mask"):
            cnnvis.explain(model, x, "feature-ablation", target=0, features=bad)
    with pytest.raises(cnnvis.MethodError, match="features must be one of"):
        cnnvis.explain(model, x, "feature-ablation", target=0, features="quickshift")
