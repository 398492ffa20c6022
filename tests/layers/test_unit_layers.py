"""A unit target can only be explained at layers that run at or before it: the default CAM layer
moves there (said in a log line), a chosen layer after it is a LayerError naming those that work,
patterns and sweeps leave the later layers out."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

import cnnvis
from cnnvis.errors import LayerError
from cnnvis.layers import requested_layers
from cnnvis.layers.units import after_unit, reaching_layers
from cnnvis.targets import UnitTarget

UNIT = UnitTarget("relu1", 2)  # TinyCNN: conv1, relu1, conv2, relu2 (the default), pool, fc


def test_forward_order_decides_what_reaches_the_unit(tiny_cnn):
    shape = (1, 3, 16, 16)
    assert reaching_layers(tiny_cnn, "relu1", shape) == ["conv1", "relu1"]
    assert after_unit(tiny_cnn, ["conv1", "relu1", "conv2", "relu2"], "relu1", shape) == [
        "conv2",
        "relu2",
    ]


def test_default_layer_moves_to_the_unit_and_says_so(tiny_cnn, tiny_input, caplog):
    """Today's default (relu2, after the unit) gives an all-zero gradient and a blank map; at
    relu1 Grad-CAM of the summed unit is the unit's own feature map (its gradient is 1)."""
    with caplog.at_level(logging.INFO, logger="cnnvis"):
        e = cnnvis.explain(tiny_cnn, tiny_input, "grad-cam", target=UNIT)
    assert e.layer == "relu1"
    assert any("runs before the default layer relu2" in r.getMessage() for r in caplog.records)
    expected = torch.relu(tiny_cnn.conv1(tiny_input))[:, 2]
    assert e.layer_map is not None and e.layer_map.abs().max() > 0
    assert torch.allclose(e.layer_map, expected, atol=1e-6)


def test_a_chosen_layer_after_the_unit_names_the_layers_that_work(tiny_cnn, tiny_input):
    with pytest.raises(LayerError) as info:
        cnnvis.explain(tiny_cnn, tiny_input, "grad-cam", layer="relu2", target=UNIT)
    message = str(info.value)
    assert "layer relu2 runs after the unit target's layer relu1" in message
    assert "choose a layer at or before relu1: relu1, conv1" in message


def test_patterns_and_sweeps_keep_the_layers_that_reach_the_unit(tiny_cnn, tiny_input, caplog):
    shape = (1, 3, 16, 16)
    with caplog.at_level(logging.INFO, logger="cnnvis"):
        found = requested_layers(tiny_cnn, "relu*", input_shape=shape, unit_layer="relu1")
    assert found == ["relu1"] and "left out" in caplog.text
    sweep = cnnvis.sweep(tiny_cnn, tiny_input[:1], "grad-cam", layers="all", target=UNIT)
    assert sweep.layers == ["conv1", "relu1"]
    assert all(sweep[layer].map.abs().max() > 0 for layer in sweep.layers)
    with pytest.raises(LayerError, match="choose a layer at or before relu1"):
        cnnvis.sweep(tiny_cnn, tiny_input[:1], "grad-cam", layers=["relu2"], target=UNIT)


def test_a_class_target_is_not_affected(tiny_cnn):
    assert requested_layers(tiny_cnn, None, input_shape=(1, 3, 16, 16)) == ["relu2"]


class TwoBranches(nn.Module):
    """branch_b runs first but only branch_a feeds relu_a: a unit there is blind to conv_b."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv_b = nn.Conv2d(3, 4, 3, padding=1)
        self.conv_a = nn.Conv2d(3, 4, 3, padding=1)
        self.relu_a = nn.ReLU()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.conv_b(x)
        a = self.relu_a(self.conv_a(x))
        return self.fc((a + b).mean(dim=(2, 3)))


def test_a_layer_off_the_units_path_is_named_with_its_zero_gradient(tiny_input, caplog):
    """Forward order cannot tell a parallel branch: the all-zero gradient does, and says so."""
    with caplog.at_level(logging.WARNING, logger="cnnvis"):
        e = cnnvis.explain(
            TwoBranches().eval(),
            tiny_input,
            "grad-cam",
            layer="conv_b",
            target=UnitTarget("relu_a", 1),
        )
    assert not e.map.any()
    assert "does not depend on layer conv_b" in caplog.text
    assert "choose a layer on the path into relu_a" in caplog.text
