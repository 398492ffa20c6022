"""shapley-sampling: the same orders as Captum's ShapleyValueSampling from the same seed, so
the same maps; efficiency (Σ φ = y(x) − y(x′)) for any number of orders; exact values on an
additive model; batches."""

from __future__ import annotations

import pytest
import torch
from captum.attr import ShapleyValueSampling
from torch import nn

import cnnvis
from cnnvis.methods._superpixels import feature_mask

from conftest import TinyCNN

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture()
def model() -> nn.Module:
    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture()
def x() -> torch.Tensor:
    noise = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    return torch.nn.functional.interpolate(noise, size=16, mode="bilinear")


def test_same_orders_same_map_as_captum(model, x):
    ours = cnnvis.explain(
        model, x, "shapley-sampling", target=[1, 2], segments=12, samples=10, seed=5,
        batch_size=13,
    )  # fmt: skip
    mask = feature_mask(x, "slic", segments=12, compactness=10.0, cell=16, method="t")
    assert min(ours.params["features"]) >= 6
    for i, target in enumerate([1, 2]):
        torch.manual_seed(5)  # Captum's randperm reads the global generator: seeded alike
        theirs = ShapleyValueSampling(model).attribute(
            x[i : i + 1], target=target, feature_mask=mask[i : i + 1, None], n_samples=10
        )
        flat = torch.stack([ours.map[i].flatten(), theirs.flatten()]).double()
        assert float(torch.corrcoef(flat)[0, 1]) >= 0.999
        torch.testing.assert_close(ours.map[i : i + 1], theirs, rtol=1e-4, atol=1e-5)


def test_efficiency_and_batches(model, x):
    kw = {"features": "grid", "cell": 4, "samples": 3}
    got = cnnvis.explain(model.double(), x.double(), "shapley-sampling", target=[1, 2], **kw)
    sums = (got.map[:, 0] / 1).flatten(1)  # every channel carries the feature's value
    per_feature = torch.stack(
        [sums[i].view(4, 4, 4, 4)[:, 0, :, 0].sum() for i in range(2)]
    )  # one pixel per 4x4 cell
    difference = (
        model(x.double())[[0, 1], [1, 2]]
        - model(torch.zeros_like(x).double())[:, [1, 2]].diagonal()
    )
    torch.testing.assert_close(per_feature, difference.detach())
    singles = [
        cnnvis.explain(model, x[i : i + 1].double(), "shapley-sampling", target=t, **kw).map
        for i, t in [(0, 1), (1, 2)]
    ]
    torch.testing.assert_close(got.map, torch.cat(singles))


def test_exact_on_an_additive_model():
    weight = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 1)).eval()
    with torch.no_grad():
        model[1].weight.copy_(weight.flatten()[None])
    x = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(4))
    got = cnnvis.explain(model, x, "shapley-sampling", target=0, features="grid", cell=2, samples=2)
    contribution = (weight * x).view(2, 2, 2, 2).sum((1, 3))
    expected = contribution.repeat_interleave(2, 0).repeat_interleave(2, 1)[None, None]
    torch.testing.assert_close(got.map, expected, rtol=1e-5, atol=1e-6)
