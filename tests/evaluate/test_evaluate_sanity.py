"""Randomization checks on a tiny model: groups, a copy (never the user's model), determinism."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cnnvis.evaluate import EvaluationError, model_randomization, randomization_groups
from cnnvis.evaluate.sanity import randomize_

from conftest import TinyCNN


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "grads": [p.grad for p in model.parameters()],
        "hooks": sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules()),
        "ids": [id(p) for p in model.parameters()],
    }


def assert_same(before: dict, after: dict) -> None:
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
    for key in ("training", "grads", "hooks", "ids"):
        assert before[key] == after[key], key


class Normed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.pool(self.body(self.bn(self.conv(x)))).flatten(1))


def test_groups_are_top_first_and_norms_join_the_unit_before():
    assert randomization_groups(TinyCNN()) == [
        ("fc", ["fc"]),
        ("conv2", ["conv2"]),
        ("conv1", ["conv1"]),
    ]
    assert randomization_groups(Normed()) == [
        ("head", ["head"]),
        ("body.0", ["body.0"]),
        ("conv+bn", ["conv", "bn"]),
    ]


def test_randomize_keeps_scale_and_changes_values():
    model = TinyCNN()
    before = model.conv2.weight.detach().clone()
    randomize_(model, ["conv2"], torch.Generator().manual_seed(0))
    after = model.conv2.weight.detach()
    assert not torch.allclose(before, after)
    assert after.std() == pytest.approx(float(before.std()), rel=0.25)
    assert torch.equal(model.conv1.weight, TinyCNN().conv1.weight)  # other groups untouched


@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_randomization_never_touches_the_users_model(mode, tiny_input):
    model = TinyCNN(inplace=True).train()
    before = snapshot(model)
    result = model_randomization(
        model, tiny_input[:1], ["gradient", "guided-backprop", "grad-cam"], mode=mode, seed=3
    )
    assert_same(before, snapshot(model))
    assert result.steps == ["trained", "fc", "conv2", "conv1"]
    for method in ("gradient", "guided-backprop", "grad-cam"):
        for measure, values in result.similarity[method].items():
            assert len(values) == 4 and values[0] == 1.0, measure
        assert len(result.maps[method]) == 4 and result.maps[method][0].shape == (16, 16)


def test_randomization_is_deterministic_and_seeded(tiny_cnn, tiny_input):
    x = tiny_input[:1]
    a = model_randomization(tiny_cnn, x, ["gradient"], seed=1)
    b = model_randomization(tiny_cnn, x, ["gradient"], seed=1)
    c = model_randomization(tiny_cnn, x, ["gradient"], seed=2)
    assert a.similarity == b.similarity
    assert a.similarity != c.similarity


def test_independent_randomization_restores_each_group(tiny_cnn, tiny_input):
    """Independent step k differs from the trained model in group k only: its first-step result
    equals the first cascading step (same seed, nothing else randomized yet)."""
    x = tiny_input[:1]
    cascade = model_randomization(tiny_cnn, x, ["gradient"], mode="cascading", seed=4)
    single = model_randomization(tiny_cnn, x, ["gradient"], mode="independent", seed=4)
    assert (
        cascade.similarity["gradient"]["spearman"][1]
        == single.similarity["gradient"]["spearman"][1]
    )
    work = copy.deepcopy(tiny_cnn)
    randomize_(work, ["conv2"], torch.Generator().manual_seed(0))
    assert torch.equal(work.fc.weight, tiny_cnn.fc.weight)


def test_bad_mode(tiny_cnn, tiny_input):
    with pytest.raises(EvaluationError, match="cascading"):
        model_randomization(tiny_cnn, tiny_input[:1], ["gradient"], mode="random")
