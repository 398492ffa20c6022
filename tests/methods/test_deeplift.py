"""deeplift and deeplift-shap: hand-computed rescale multipliers, completeness on ReLU /
max-pool networks, functional and in-place ReLU, a zero difference, agreement with Captum's
DeepLift / DeepLiftShap on the same baselines (a small CNN, VGG11 and ResNet-18, random-init).

Captum's max-pool rule un-pools with `max_unpool`, which overwrites instead of summing where
windows overlap, and loses completeness after a ReLU (measured: Σ attr − Δy off by 0.4 on a
conv-ReLU-maxpool net where ours is off by 1e-7): the agreement runs on VGG11 / ResNet-18 with
their max pools as average pools (same weights, both sides), and max pooling is checked by hand
and by completeness."""

from __future__ import annotations

import copy
import types

import pytest
import torch
import torch.nn.functional as F
import torchvision
from captum.attr import DeepLift, DeepLiftShap
from torch import nn

import cnnvis

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]).double())[0, 1])


def captum_copy(model: nn.Module) -> nn.Module:
    """The model as Captum's DeepLift needs it: no in-place activation, no ReLU used twice."""
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
        if isinstance(module, torchvision.models.resnet.BasicBlock):
            module.relu_out = nn.ReLU()
            module.forward = types.MethodType(_block_forward, module)
    return twin


def _block_forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    return self.relu_out(self.bn2(self.conv2(out)) + identity)


def avg_pools(model: nn.Module) -> nn.Module:
    """Every MaxPool2d replaced by the AvgPool2d of the same window (see the module docstring)."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.MaxPool2d):
                k, s, p = child.kernel_size, child.stride, child.padding
                setattr(module, child_name, nn.AvgPool2d(k, s, p, count_include_pad=False))
    return model


class SmallCNN(nn.Module):
    """Conv-ReLU-conv-ELU-conv-LeakyReLU-conv-Tanh-GAP-Softplus-linear-Sigmoid-linear: each
    nonlinearity Captum's DeepLift supports, as modules."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ELU(),
            nn.Conv2d(8, 8, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(8, 8, 3), nn.Tanh(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Softplus(), nn.Linear(8, 8), nn.Sigmoid(),
            nn.Linear(8, 5),
        )  # fmt: skip

    def forward(self, x):
        return self.body(x)


class ReluPool(nn.Module):
    """Bias-free conv-ReLU-maxpool(3, 2, 1)-conv-F.relu_ (functional, in place)-maxpool-linear."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.r1 = nn.ReLU(inplace=True)
        self.c2 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.fc = nn.Linear(6 * 2 * 2, 4, bias=False)

    def forward(self, x):
        x = F.max_pool2d(self.r1(self.c1(x)), 3, 2, 1)
        x = F.max_pool2d(F.relu_(self.c2(x)), 2)
        return self.fc(x.flatten(1))


def seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for p in model.parameters():
        nn.init.normal_(p, std=0.3) if p.dim() == 1 else None
    return model.eval()


def images(n: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("make", "size"),
    [
        (lambda: SmallCNN(), 10),
        (lambda: avg_pools(torchvision.models.vgg11(weights=None)), 32),
        (lambda: avg_pools(torchvision.models.resnet18(weights=None)), 32),
    ],
    ids=["small", "vgg11", "resnet18"],
)
def test_deeplift_agrees_with_captum(make, size):
    torch.manual_seed(0)
    model = seeded(make())
    x, baseline = images(2, size), 0.5 * images(1, size, seed=2)
    ours = cnnvis.explain(model, x, "deeplift", target=[1, 3], baseline=baseline).map
    theirs = DeepLift(captum_copy(model)).attribute(x, baseline.expand_as(x), target=[1, 3])
    theirs = theirs.detach()
    assert corr(ours, theirs) >= 0.999
    assert float((ours - theirs).abs().max()) <= 1e-3 * float(theirs.abs().max())


def test_rescale_multiplier_by_hand():
    """y = w2 · relu(w1 · x): the multiplier of the ReLU is Δrelu / Δz, not relu′(z)."""
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(2, 1, bias=False), nn.ReLU(), nn.Linear(1, 1, bias=False)
    )
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 2.0]]))
        model[3].weight.copy_(torch.tensor([[3.0]]))
    x, base = (
        torch.tensor([[1.0, 1.0]]).view(1, 2, 1, 1),
        torch.tensor([[-2.0, -1.0]]).view(1, 2, 1, 1),
    )
    # z = 3 at x, -4 at x': Δrelu / Δz = 3 / 7; attr = (x - x') * w1 * 3/7 * w2
    expected = torch.tensor([3.0, 2.0 * 2]).view(1, 2, 1, 1) * 3 / 7 * 3
    got = cnnvis.explain(model.eval(), x, "deeplift", target=0, baseline=base).map
    torch.testing.assert_close(got, expected)
    assert float(got.sum()) == pytest.approx(9.0)  # f(x) - f(x') = 9 - 0


def test_completeness_on_relu_maxpool_net_and_inplace_functional_relu():
    model = seeded(ReluPool()).double()
    x, base = images(3, 8).double(), images(3, 8, seed=5).double()
    result = cnnvis.explain(model, x, "deeplift", target=[0, 1, 2], baseline=base)
    difference = model(x)[[0, 1, 2], [0, 1, 2]] - model(base)[[0, 1, 2], [0, 1, 2]]
    torch.testing.assert_close(result.map.flatten(1).sum(1), difference.detach(), atol=1e-4, rtol=0)
    assert max(result.params["completeness_error"]) < 1e-4
    plain = cnnvis.explain(model, x, "gradient", target=[0, 1, 2]).map
    assert not torch.allclose(result.map, plain * (x - base))  # the rule did change the map


def test_a_nonlinearity_whose_input_equals_the_reference_keeps_its_gradient():
    """Where Δz = 0 the multiplier is relu′(z) (Captum's eps rule): a pixel equal to the
    baseline gets zero attribution, the others theirs."""
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False)
    )
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(2))
        model[3].weight.copy_(torch.tensor([[2.0, 5.0]]))
    x, base = torch.tensor([1.0, 3.0]).view(1, 2, 1, 1), torch.tensor([1.0, -1.0]).view(1, 2, 1, 1)
    got = cnnvis.explain(model.eval(), x, "deeplift", target=0, baseline=base).map
    theirs = DeepLift(model).attribute(x, base, target=0)
    torch.testing.assert_close(got, torch.tensor([0.0, 15.0]).view(1, 2, 1, 1))
    torch.testing.assert_close(got, theirs.detach())


def test_an_image_equal_to_its_baseline_is_refused_clearly():
    model = seeded(SmallCNN())
    x = images(1, 10)
    with pytest.raises(cnnvis.MethodError, match="equals its baseline"):
        cnnvis.explain(model, x, "deeplift", target=0, baseline=x)


def test_model_unchanged_and_batch_equals_single_images():
    model = seeded(ReluPool())
    before = copy.deepcopy(model.state_dict())
    x = images(3, 8)
    batch = cnnvis.explain(model, x, "deeplift", target=[0, 1, 2], baseline="zeros").map
    singles = [
        cnnvis.explain(model, x[i : i + 1], "deeplift", target=i, baseline="zeros").map
        for i in range(3)
    ]
    torch.testing.assert_close(batch, torch.cat(singles))
    assert model.r1.inplace and all(
        torch.equal(before[k], v) for k, v in model.state_dict().items()
    )
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())


@pytest.mark.parametrize("batch_size", [32, 2])
def test_deeplift_shap_agrees_with_captum_on_the_same_baselines(batch_size):
    model = seeded(SmallCNN())
    x, baselines = images(2, 10), images(4, 10, seed=7)
    ours = cnnvis.explain(
        model, x, "deeplift-shap", target=[1, 3], baselines=baselines, batch_size=batch_size
    )
    theirs = DeepLiftShap(captum_copy(model)).attribute(x, baselines, target=[1, 3]).detach()
    assert corr(ours.map, theirs) >= 0.999
    assert float((ours.map - theirs).abs().max()) <= 1e-3 * float(theirs.abs().max())


def test_deeplift_shap_is_the_mean_of_deeplift_and_complete():
    model = seeded(ReluPool()).double()
    x, baselines = images(2, 8).double(), images(3, 8, seed=4).double()
    shap = cnnvis.explain(model, x, "deeplift-shap", target=[0, 2], baselines=baselines)
    each = [
        cnnvis.explain(model, x, "deeplift", target=[0, 2], baseline=b[None]).map for b in baselines
    ]
    torch.testing.assert_close(shap.map, torch.stack(each).mean(0))
    assert max(shap.params["completeness_error"]) < 1e-9
    named = cnnvis.explain(model, x, "deeplift-shap", target=0, baselines="black,noise", seed=3)
    assert torch.isfinite(named.map).all() and named.params["baselines"] == "black,noise"
