"""Layer patterns name the layers a map is useful at (not Identity, dropout, squeeze-excitation
gates or a module repeating its enclosing one's output), and a sweep shows at most `max_layers`
of them, outermost first, saying how to get the rest."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn
from torchvision.ops import Conv2dNormActivation, SqueezeExcitation

import cnnvis
from cnnvis.layers import pattern_layers, requested_layers, sweep_layers
from cnnvis.layers.patterns import capped

SHAPE = (1, 3, 16, 16)


class Blocks(nn.Module):
    """stem (conv-norm-act) -> blocks.0 (conv, Identity, Dropout, SE, ReLU) -> blocks.1 (conv,
    ReLU) -> mean -> linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = Conv2dNormActivation(3, 8, 3)
        self.blocks = nn.Sequential(
            nn.Sequential(
                nn.Conv2d(8, 8, 3, padding=1),
                nn.Identity(),
                nn.Dropout(0.1),
                SqueezeExcitation(8, 2),
                nn.ReLU(),
            ),
            nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.ReLU()),
        )
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


@pytest.fixture
def model() -> nn.Module:
    return Blocks().eval()


def test_a_pattern_leaves_out_what_repeats_or_passes_through(model):
    """'blocks.*' matches 9 spatial modules; useful: the convolutions and the blocks (each
    block's last ReLU *is* the block's output, Identity / Dropout / SE only pass or rescale)."""
    spatial = [i.name for i in cnnvis.list_layers(model, SHAPE, "blocks.*") if i.spatial]
    assert len(spatial) == 9
    useful = ["blocks.0.0", "blocks.0", "blocks.1.0", "blocks.1"]
    assert pattern_layers(model, "blocks.*", SHAPE) == useful
    assert requested_layers(model, "blocks.*", input_shape=SHAPE) == useful  # explain --layer
    assert pattern_layers(model, "stem*", SHAPE) == ["stem.0", "stem.1", "stem"]  # not stem.2


def test_a_pattern_naming_only_pass_through_modules_keeps_them(model):
    assert pattern_layers(model, "blocks.0.[12]", SHAPE) == ["blocks.0.1", "blocks.0.2"]


def test_the_enclosing_modules_output_is_the_same_tensor(model):
    infos = {i.name: i for i in cnnvis.list_layers(model, SHAPE)}
    assert infos["blocks.0.4"].same_as == "blocks.0"
    assert infos["blocks.1"].same_as == "blocks"  # the last block is the Sequential's output
    assert infos["blocks.0.0"].same_as is None


def test_cap_keeps_whole_levels_outermost_first_and_says_how_to_get_all(caplog):
    names = ["a.0.x", "a.0.y", "a.0", "a.1.x", "a.1", "b"]
    with caplog.at_level(logging.WARNING, logger="cnnvis"):
        assert capped(names, 4, "'*'") == ["a.0", "a.1", "b"]
    assert "'*' gives 6 layers; the sweep shows 3 of them" in caplog.text
    assert "max_layers=6 (--max-layers 6)" in caplog.text
    flat = [f"features.{i}" for i in range(31)]
    assert capped(flat, 4, "'features.*'") == [
        "features.0",
        "features.10",
        "features.20",
        "features.30",
    ]
    assert capped(names, None, "") == names and capped(names, 6, "") == names


def test_sweep_by_pattern_is_capped_and_lists_are_not(model, caplog):
    x = torch.rand(1, 3, 16, 16)
    with caplog.at_level(logging.WARNING, logger="cnnvis"):
        two = cnnvis.sweep(model, x, "grad-cam", layers="blocks.*", target=0, max_layers=2)
    assert two.layers == ["blocks.0", "blocks.1"] and "--max-layers 4" in caplog.text
    every = cnnvis.sweep(model, x, "grad-cam", layers="blocks.*", target=0, max_layers=None)
    assert every.layers == ["blocks.0.0", "blocks.0", "blocks.1.0", "blocks.1"]
    listed = ["stem.0", "stem.1", "stem.2"]
    assert sweep_layers(model, listed, SHAPE, max_layers=1) == listed
