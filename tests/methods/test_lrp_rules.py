"""LRP rules on hand-computable models, conservation, and the errors for what LRP cannot do."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnvis
from cnnvis.methods.lrp import Composite, Epsilon, Flat, Pass, ZPlus, relevance
from cnnvis.targets import UnitTarget

W1 = [[1.0, -1.0], [2.0, 1.0], [1.0, 1.0]]
W2 = [[1.0, -3.0, 2.0], [0.5, 1.0, -1.0]]


def two_layer() -> nn.Sequential:
    """x (2) -> W1 -> ReLU -> W2 -> logits (2), bias-free, float64.

    x = [1, 2]: h = W1 x = [-1, 4, 3], a = relu(h) = [0, 4, 3], y = W2 a = [-6, 1]."""
    net = nn.Sequential(nn.Linear(2, 3, bias=False), nn.ReLU(), nn.Linear(3, 2, bias=False))
    net = net.double()
    net[0].weight.data = torch.tensor(W1, dtype=torch.float64)
    net[2].weight.data = torch.tensor(W2, dtype=torch.float64)
    return net


X = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
CLASS_1 = torch.tensor([1])


def explain(model: nn.Module, composite: Composite, x: torch.Tensor = X) -> torch.Tensor:
    return relevance(model, x, composite, targets=CLASS_1).input


def test_epsilon_by_hand():
    """Class 1 (y = 1): R_a = a ⊙ w ⊙ R / y = [0, 4, -3]; through the ReLU unchanged;
    R_x = x ⊙ W1ᵀ(R_a / h) = [1 · (2 - 1), 2 · (1 - 1)] = [1, 0]."""
    found = explain(two_layer(), Composite("eps", ((nn.Linear, Epsilon(1e-12)),)))
    torch.testing.assert_close(found, torch.tensor([[1.0, 0.0]], dtype=torch.float64))


def test_epsilon_damps_by_hand():
    """ε = 1 on the top layer: R_a = a ⊙ w / (1 + 1) = [0, 2, -1.5]; below (ε ≈ 0):
    R_x = x ⊙ W1ᵀ([0, 2/4, -1.5/3]) = [1 · (1 - 0.5), 2 · (0.5 - 0.5)] = [0.5, 0]."""
    composite = Composite("eps", (("2", Epsilon(1.0)), (nn.Linear, Epsilon(1e-12))))
    found = explain(two_layer(), composite)
    torch.testing.assert_close(found, torch.tensor([[0.5, 0.0]], dtype=torch.float64))


def test_z_plus_by_hand():
    """z⁺, class 1: w⁺ = [0.5, 1, 0], z = 4 -> R_a = [0, 1, 0]; neuron 2 (h = 4, w = [2, 1]):
    R_x = [1 · 2, 2 · 1] / 4 = [0.5, 0.5]."""
    found = explain(two_layer(), Composite("z+", ((nn.Linear, ZPlus()),)))
    torch.testing.assert_close(
        found, torch.tensor([[0.5, 0.5]], dtype=torch.float64), atol=1e-6, rtol=1e-6
    )


def test_flat_and_pass_by_hand():
    """flat on the first layer: R_j spread evenly over the 2 inputs: R_x = (0 + 4 - 3) / 2 each."""
    composite = Composite("flat", ((nn.Linear, Epsilon(1e-12)),), ((nn.Linear, Flat()),))
    found = explain(two_layer(), composite)  # the stabilizer 1e-6 over z = 2
    torch.testing.assert_close(
        found, torch.tensor([[0.5, 0.5]], dtype=torch.float64), rtol=1e-5, atol=0
    )
    passing = Composite("pass", ((nn.Linear, Epsilon(1e-12)), (nn.ReLU, Pass())))
    torch.testing.assert_close(
        explain(two_layer(), passing), torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    )


class BiasFreeResidual(nn.Module):
    """conv -> ReLU -> (conv -> ReLU) + skip -> max pool -> conv -> ReLU -> avg pool -> linear,
    bias-free, with a functional ReLU and an in-place residual sum."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.conv3 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16, 5, bias=False)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv1(x))
        out = F.relu(self.conv2(x))
        out += x
        x = self.pool(out)
        x = self.relu(self.conv3(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def test_epsilon_conserves_the_logit_on_a_bias_free_network():
    """Bias-free, ε = 1e-6: Σ R = the explained logit within 1%, through a residual sum,
    max and average pooling, functional and in-place ReLUs."""
    model = BiasFreeResidual()
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    explained = cnnvis.explain(model, x, "lrp", target=[0, 2, 4], composite="Epsilon")
    sums = torch.tensor(explained.params["relevance_sum"])
    logits = model(x)[[0, 1, 2], [0, 2, 4]].detach()
    torch.testing.assert_close(sums, logits, rtol=1e-2, atol=0)
    torch.testing.assert_close(torch.tensor(explained.params["explained_score"]), logits)


def test_every_named_composite_gives_a_finite_nonzero_map():
    model = BiasFreeResidual()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    for name in cnnvis.methods.lrp.COMPOSITES:
        explained = cnnvis.explain(
            model, x, "lrp", target=[1, 3], composite=name, low=-3.0, high=3.0
        )
        assert torch.isfinite(explained.map).all(), name
        assert explained.map.abs().sum() > 0, name


class Normed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.GroupNorm(2, 4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(self.conv(x)).mean((2, 3)))


def test_a_layer_without_a_rule_is_named_with_how_to_give_it_one():
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(cnnvis.MethodError) as caught:
        cnnvis.explain(Normed(), x, "lrp")
    message = str(caught.value)
    assert "norm (GroupNorm)" in message and "rules={'GroupNorm': 'pass'}" in message
    with pytest.raises(cnnvis.MethodError, match="layer norm is a GroupNorm"):
        cnnvis.explain(Normed(), x, "lrp", rules={"norm": "epsilon"})
    explained = cnnvis.explain(Normed(), x, "lrp", rules={"GroupNorm": "pass"})
    assert torch.isfinite(explained.map).all()


class Gated(nn.Module):
    """A block multiplying two activations of the same shape: no LRP rule here splits it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3)
        self.b = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) * torch.sigmoid(self.b(x))


def test_a_block_that_cannot_be_canonized_is_refused_by_name():
    model = nn.Sequential(Gated(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(cnnvis.MethodError) as caught:
        cnnvis.explain(model, torch.randn(1, 3, 8, 8), "lrp")
    assert "block 0 (Gated)" in str(caught.value)


def test_the_user_model_keeps_its_batchnorm_and_weights():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cnnvis.explain(model, torch.randn(2, 3, 8, 8), "lrp", target=[0, 1])
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert isinstance(model[1], nn.BatchNorm2d) and model[0].weight.requires_grad


def test_batchnorm_merged_gives_the_map_of_the_folded_network():
    """A conv + BN network and its hand-folded twin (no BN) give the same map."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
        model[1].weight.uniform_(0.5, 2)
        model[1].bias.uniform_(-1, 1)
    bn = model[1]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    folded = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), model[5]
    )
    with torch.no_grad():
        folded[0].weight.copy_(model[0].weight * scale[:, None, None, None])
        folded[0].bias.copy_((model[0].bias - bn.running_mean) * scale + bn.bias)
    x = torch.randn(2, 3, 8, 8)
    one = cnnvis.explain(model, x, "lrp", target=[0, 1], composite="EpsilonPlus").map
    two = cnnvis.explain(folded, x, "lrp", target=[0, 1], composite="EpsilonPlus").map
    torch.testing.assert_close(one, two, rtol=1e-4, atol=1e-6)


def test_the_relevance_sweep_conserves_layer_by_layer():
    """One backward, relevance at every cut of the network: each sums to the logit (1%)."""
    model = BiasFreeResidual()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    layers = ["conv1", "pool", "conv3", "fc"]
    explained = cnnvis.explain(model, x, "lrp", target=[1, 4], composite="Epsilon", sweep=layers)
    sums = explained.params["layer_relevance_sums"]
    assert list(sums) == [*layers, "input"]
    logits = model(x)[[0, 1], [1, 4]].detach()
    for name, values in sums.items():
        torch.testing.assert_close(torch.tensor(values), logits, rtol=1e-2, atol=0, msg=name)


def test_a_unit_target_starts_from_the_units_activation():
    """Relevance of channel 5 of conv3 (summed): the map sums to the unit's score."""
    model = BiasFreeResidual()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    explained = cnnvis.explain(model, x, "lrp", target=UnitTarget("conv3", 5), composite="Epsilon")
    score = explained.params["explained_score"][0]
    assert score > 0
    assert abs(explained.params["relevance_sum"][0] - score) <= 1e-2 * abs(score)


def test_the_canonized_copy_is_reused_until_the_weights_change():
    from cnnvis.methods.lrp.canonizers import canonized_copy

    model = BiasFreeResidual()
    x = torch.randn(1, 3, 16, 16)
    first = cnnvis.explain(model, x, "lrp", target=1).map
    assert canonized_copy(model, x) is canonized_copy(model, x)
    copied = canonized_copy(model, x)
    with torch.no_grad():
        model.fc.weight.mul_(-1)
    assert canonized_copy(model, x) is not copied
    torch.testing.assert_close(cnnvis.explain(model, x, "lrp", target=1).map, -first)


class SqueezeExcite(nn.Module):
    """Bias-free conv -> ReLU6 -> x * sigmoid(fc(mean(x))) -> mean -> linear: a gate."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.conv = nn.Conv2d(3, 8, 3, bias=False)
        self.act = nn.ReLU6()
        self.squeeze = nn.Linear(8, 8, bias=False)
        self.fc = nn.Linear(8, 4, bias=False)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv(x))
        gate = torch.sigmoid(self.squeeze(x.mean((2, 3))))[:, :, None, None]
        return self.fc((x * gate).mean((2, 3)))


def test_a_squeeze_excitation_gate_is_a_constant_and_relevance_is_conserved():
    """The gate's branch gets no relevance (it only scales), so Σ R = the logit (1%)."""
    model = SqueezeExcite()
    x = torch.rand(2, 3, 10, 10, generator=torch.Generator().manual_seed(6))
    explained = cnnvis.explain(model, x, "lrp", target=[0, 3], composite="Epsilon")
    logits = model(x)[[0, 1], [0, 3]].detach()
    torch.testing.assert_close(
        torch.tensor(explained.params["relevance_sum"]), logits, rtol=1e-2, atol=0
    )


def test_lrp_explains_a_target_computed_from_the_output():
    """A segmentation mask target: relevance starts at output ⊙ ∂score/∂output and, on a
    bias-free ReLU network with the epsilon rule, the input relevance sums to the score."""
    import torch
    from torch import nn

    import cnnvis
    from cnnvis.targets import MaskTarget

    class Segmenter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 6, 3, padding=1, bias=False)
            self.b = nn.Conv2d(6, 4, 1, bias=False)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"out": self.b(torch.relu(self.a(x)))}

    torch.manual_seed(0)
    model = Segmenter().double().eval()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    box = MaskTarget(2, box=(1, 1, 6, 5))
    e = cnnvis.explain(model, x, "lrp", target=box, composite="Epsilon", epsilon=1e-9)
    scores = box.scores(model(x), {})
    assert torch.allclose(e.map.sum(dim=(1, 2, 3)), scores, rtol=1e-6)
