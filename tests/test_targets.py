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


def test_parse_unit_targets():
    from cnnvis.targets import UnitTarget, parse_target

    assert parse_target("top1") is None and parse_target("285") == 285
    assert parse_target("tabby") == "tabby" and parse_target("tiger cat") == "tiger cat"
    assert parse_target("layer4:17") == UnitTarget("layer4", 17, "sum")
    assert parse_target("features.28:5@max") == UnitTarget("features.28", 5, "max")
    assert parse_target("layer4:17@3,4") == UnitTarget("layer4", 17, "point", (3, 4))
    assert str(parse_target("features.28:5@max")) == "features.28:5@max"


def test_unit_target_gradient_is_the_gradient_of_that_channel(tiny_cnn, tiny_input):
    from cnnvis.targets import UnitTarget

    x = tiny_input.clone().requires_grad_(True)
    act = tiny_cnn.relu1(tiny_cnn.conv1(x))
    for unit, score in [
        (UnitTarget("relu1", 2, "sum"), act[:, 2].sum()),
        (UnitTarget("relu1", 2, "max"), act[:, 2].flatten(1).amax(1).sum()),
        (UnitTarget("relu1", 2, "point", (5, 7)), act[:, 2, 5, 7].sum()),
    ]:
        (expected,) = torch.autograd.grad(score, x, retain_graph=True)
        e = cnnvis.explain(tiny_cnn, tiny_input, "gradient", target=unit)
        assert torch.allclose(e.map, expected, atol=1e-6), unit
        assert e.targets == [-1] * 3 and e.target_names == [str(unit)] * 3
    # deconvnet of a single feature map (Zeiler & Fergus' projection) runs too
    e = cnnvis.explain(tiny_cnn, tiny_input, "deconvnet", target=UnitTarget("relu2", 1, "max"))
    assert e.map.abs().sum() > 0


def test_bad_unit_targets(tiny_cnn, tiny_input):
    from cnnvis.targets import UnitTarget

    with pytest.raises(cnnvis.TargetError, match="has 6 channels"):
        cnnvis.explain(tiny_cnn, tiny_input, "gradient", target=UnitTarget("relu1", 9))
    with pytest.raises(cnnvis.LayerError, match="did you mean"):
        cnnvis.explain(tiny_cnn, tiny_input, "gradient", target=UnitTarget("relu9", 0))
