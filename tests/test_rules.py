"""Backward rules against hand-derived values (see HandNet in conftest.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnvis
from cnnvis.capture import record

from conftest import HandNet, TinyCNN

# Class 0, g = dlogit/da = W2[0] = [1, -3, 2]; h = [-1, 4, 3]; d/dx = W1^T (d/dh).
#   plain:     d/dh = g * 1[h>0]           = [0, -3, 2] -> x: -3*[2,1] + 2*[1,1]      = [-4, -1]
#   guided:    d/dh = max(g*1[h>0], 0)     = [0,  0, 2] -> x: 2*[1,1]                 = [ 2,  2]
#   deconvnet: d/dh = max(g, 0)            = [1,  0, 2] -> x: [1,-1] + 2*[1,1]        = [ 3,  1]
EXPECTED_CLASS0 = {"gradient": [-4.0, -1.0], "guided-backprop": [2.0, 2.0], "deconvnet": [3.0, 1.0]}
# Class 1, g = [0.5, 1, -1]:
#   plain [0, 1, -1] -> [1, 0]; guided [0, 1, 0] -> [2, 1]; deconvnet [0.5, 1, 0] -> [2.5, 0.5]
EXPECTED_CLASS1 = {"gradient": [1.0, 0.0], "guided-backprop": [2.0, 1.0], "deconvnet": [2.5, 0.5]}


@pytest.mark.parametrize("act", ["module", "functional", "method"])
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize(("target", "expected"), [(0, EXPECTED_CLASS0), (1, EXPECTED_CLASS1)])
def test_rules_match_hand_values(act, inplace, target, expected, hand_input):
    model = HandNet(act=act, inplace=inplace).eval()
    results = cnnvis.explain_many(model, hand_input, list(expected), target=target)
    for method, values in expected.items():
        got = results[(method, None)].map.flatten().tolist()
        assert got == pytest.approx(values, abs=1e-12), (method, act, inplace)


def test_relu6_saturated_units_pass_no_gradient(hand_input):
    """ReLU6 with x = [1, 2] * 2 = [2, 4]: h = [-2, 8, 6]; every unit is outside (0, 6),
    so plain and guided are zero while deconvnet still passes max(g, 0)."""
    model = HandNet(act="relu6").eval()
    x = hand_input * 2
    results = cnnvis.explain_many(model, x, ["gradient", "guided-backprop", "deconvnet"], target=0)
    assert results[("gradient", None)].map.abs().max() == 0
    assert results[("guided-backprop", None)].map.abs().max() == 0
    # deconvnet: max([1, -3, 2], 0) = [1, 0, 2] -> [3, 1]
    assert results[("deconvnet", None)].map.flatten().tolist() == pytest.approx([3.0, 1.0])


def test_relu6_in_range_matches_relu(hand_input):
    """Inside (0, 6) ReLU6 behaves as ReLU: same hand values as EXPECTED_CLASS0."""
    model = HandNet(act="relu6").eval()
    results = cnnvis.explain_many(model, hand_input, list(EXPECTED_CLASS0), target=0)
    for method, values in EXPECTED_CLASS0.items():
        assert results[(method, None)].map.flatten().tolist() == pytest.approx(values)


def test_plain_rule_is_the_exact_gradient_under_the_rule_mode(tiny_cnn, tiny_input):
    x = tiny_input.clone().requires_grad_(True)
    logits = tiny_cnn(x)
    expected = torch.autograd.grad(logits.gather(1, logits.argmax(1)[:, None]).sum(), x)[0]
    rec = record(tiny_cnn, tiny_input, rules=True)
    assert torch.equal(rec.input_gradient("plain"), expected)
    assert rec.state is not None and rec.state.calls == 2


@pytest.mark.parametrize("method", ["gradient", "guided-backprop", "deconvnet", "grad-cam"])
def test_inplace_and_reused_twins_give_identical_maps(method, tiny_input):
    base = cnnvis.explain(TinyCNN().eval(), tiny_input, method, target=1).map
    for twin in (TinyCNN(inplace=True), TinyCNN(reuse=True), TinyCNN(inplace=True, reuse=True)):
        got = cnnvis.explain(twin.eval(), tiny_input, method, target=1).map
        assert torch.allclose(got, base, atol=1e-6), twin


def test_gradient_matches_finite_differences(hand_input):
    model = HandNet().eval()

    def score(x):
        return model(x)[:, 0].sum()

    assert torch.autograd.gradcheck(score, (hand_input.clone().requires_grad_(True),))


class SmoothNet(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.lin = nn.Conv2d(2, 3, 1, bias=False).double()
        self.lin.weight.data = torch.tensor(HandNet.W1, dtype=torch.float64)[:, :, None, None]
        self.act = act
        self.fc = nn.Linear(3, 2, bias=False).double()
        self.fc.weight.data = torch.tensor(HandNet.W2, dtype=torch.float64)

    def forward(self, x):
        return self.fc(self.act(self.lin(x)).flatten(1))


@pytest.mark.parametrize("act", [F.silu, F.gelu, F.hardswish, F.leaky_relu, F.elu])
def test_smooth_activations_guided_is_clamped_local_gradient(act, hand_input):
    """Documented rule for SiLU/GELU/...: guided = max(f'(h) * g, 0), deconvnet = max(g, 0)."""
    model = SmoothNet(act).eval()
    w1 = torch.tensor(HandNet.W1, dtype=torch.float64)
    g = torch.tensor(HandNet.W2[0], dtype=torch.float64)
    h = (w1 @ hand_input.flatten()).requires_grad_(True)
    (local,) = torch.autograd.grad(act(h), h, g)
    results = cnnvis.explain_many(
        model, hand_input, ["gradient", "guided-backprop", "deconvnet"], target=0
    )
    assert results[("gradient", None)].map.flatten() == pytest.approx((w1.T @ local).tolist())
    guided = w1.T @ local.clamp(min=0)
    assert results[("guided-backprop", None)].map.flatten() == pytest.approx(guided.tolist())
    deconv = w1.T @ g.clamp(min=0)
    assert results[("deconvnet", None)].map.flatten() == pytest.approx(deconv.tolist())


def test_rules_need_activations_to_act_on():
    """A model with no activation (e.g. linear) cannot have a guided map: say so."""
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    with pytest.raises(cnnvis.MethodError, match="no ReLU-like activation"):
        cnnvis.explain(model, torch.randn(1, 3, 4, 4), "guided-backprop")
