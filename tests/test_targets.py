"""Targets and logits selection."""

from __future__ import annotations

from collections import namedtuple

import pytest
import torch

import cnnvis
from cnnvis.targets import resolve_targets, select_logits

LOGITS = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 1.0]])


def test_default_is_each_images_top1():
    assert resolve_targets(None, LOGITS).tolist() == [1, 0]
    assert resolve_targets("top1", LOGITS).tolist() == [1, 0]


def test_int_name_and_per_image_lists():
    assert resolve_targets(2, LOGITS).tolist() == [2, 2]
    assert resolve_targets("2", LOGITS).tolist() == [2, 2]
    assert resolve_targets([0, 2], LOGITS).tolist() == [0, 2]
    assert resolve_targets(torch.tensor([2, 1]), LOGITS).tolist() == [2, 1]
    assert resolve_targets("Dog", LOGITS, ["cat", "dog", "fish"]).tolist() == [1, 1]
    assert resolve_targets(["fish", 0], LOGITS, ["cat", "dog", "fish"]).tolist() == [2, 0]


def test_bad_targets_are_typed_errors():
    with pytest.raises(cnnvis.TargetError, match="3 targets given for a batch of 2"):
        resolve_targets([0, 1, 2], LOGITS)
    with pytest.raises(cnnvis.TargetError, match="out of range"):
        resolve_targets(3, LOGITS)
    with pytest.raises(cnnvis.TargetError, match="out of range"):
        resolve_targets(-1, LOGITS)
    with pytest.raises(cnnvis.TargetError, match="did you mean"):
        resolve_targets("dgo", LOGITS, ["cat", "dog", "fish"])
    with pytest.raises(cnnvis.TargetError, match="no class names"):
        resolve_targets("dog", LOGITS)


def test_select_logits_from_any_output():
    assert select_logits(LOGITS) is LOGITS
    assert select_logits((LOGITS, torch.zeros(2))) is LOGITS
    assert select_logits({"logits": LOGITS, "aux": torch.zeros(1)}) is LOGITS
    assert select_logits({"out": LOGITS, "aux": 3}, key="out") is LOGITS
    Output = namedtuple("Output", ["loss", "logits"])
    assert select_logits(Output(None, LOGITS)) is LOGITS
    with pytest.raises(cnnvis.ModelError, match="no entry"):
        select_logits({"a": LOGITS}, key="b")
    with pytest.raises(cnnvis.ModelError, match="shape"):
        select_logits(torch.zeros(2, 3, 4))


def test_explain_on_a_model_returning_a_dict(tiny_cnn, tiny_input):
    class DictModel(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return {"scores": self.net(x), "features": x.mean()}

    wrapped = DictModel(tiny_cnn).eval()
    direct = cnnvis.explain(tiny_cnn, tiny_input, "gradient").map
    via_dict = cnnvis.explain(wrapped, tiny_input, "gradient", output="scores").map
    assert torch.equal(direct, via_dict)
