"""`requested_layers`: the one reading of a layer request ("auto", names, comma-separated
lists, glob patterns, DataParallel's `module.` prefix) that the library, the command line, the
web page, batch runs and the evaluation all use."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnvis
from cnnvis.layers import requested_layers

from conftest import TinyCNN

SHAPE = (1, 3, 16, 16)


@pytest.fixture()
def model() -> TinyCNN:
    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.mark.parametrize("auto", [None, "auto", "AUTO", "", [], [None], " auto "])
def test_auto_is_the_default_layer(model, auto, caplog):
    with caplog.at_level("INFO", logger="cnnvis.layers.requests"):
        assert requested_layers(model, auto, input_shape=SHAPE) == ["relu2"]
    assert "using the default layer relu2" in caplog.text
    assert cnnvis.default_layer(model, SHAPE) == "relu2"


def test_names_lists_and_commas_in_the_order_given_once_each(model):
    assert requested_layers(model, "conv2", input_shape=SHAPE) == ["conv2"]
    assert requested_layers(model, "conv2, conv1", input_shape=SHAPE) == ["conv2", "conv1"]
    assert requested_layers(model, ["conv1", None, "conv2,conv1"], input_shape=SHAPE) == [
        "conv1",
        "conv2",
    ]


def test_a_pattern_is_every_spatial_layer_that_matches_in_forward_order(model):
    assert requested_layers(model, "relu*", input_shape=SHAPE) == ["relu1", "relu2"]
    assert requested_layers(model, "conv?", input_shape=SHAPE) == ["conv1", "conv2"]
    with pytest.raises(cnnvis.LayerError, match=r"no layer with a spatial output matches 'fc\*'"):
        requested_layers(model, "fc*", input_shape=SHAPE)  # fc is not spatial


def test_dataparallel_prefix_is_accepted(model):
    assert requested_layers(model, "module.conv1", input_shape=SHAPE) == ["module.conv1"]


def test_wrong_names_are_errors_with_the_layers_hint_even_when_no_method_needs_one(model):
    with pytest.raises(cnnvis.LayerError, match="did you mean: conv2") as caught:
        requested_layers(model, "conv3", needed=False, input_shape=SHAPE)
    assert caught.value.hint == cnnvis.errors.Hint("layers")
    assert "see cnnvis.list_layers(model)" in str(caught.value)
    assert requested_layers(model, "conv2", needed=False, input_shape=SHAPE) == []


def test_auto_mixed_with_names_and_non_strings_are_errors(model):
    with pytest.raises(cnnvis.LayerError, match="cannot be mixed"):
        requested_layers(model, "auto,conv1", input_shape=SHAPE)
    with pytest.raises(cnnvis.LayerError, match="a list of names or None"):
        requested_layers(model, [3], input_shape=SHAPE)  # type: ignore[list-item]


def test_explain_many_reads_patterns_and_auto_through_the_resolver(model):
    """The library with a pattern and with "auto", the spellings the CLI and the web page pass
    on unchanged (their own tests cover --layer and the form field)."""
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    many = cnnvis.explain_many(model, x, ["grad-cam"], layers="relu*")
    assert sorted(layer for _, layer in many) == ["relu1", "relu2"]
    one = cnnvis.explain_many(model, x, ["grad-cam"], layers="auto")
    assert [layer for _, layer in one] == ["relu2"]


def test_a_model_without_spatial_layers_says_so():
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).eval()
    with pytest.raises(cnnvis.LayerError, match="no layer with a spatial"):
        requested_layers(flat, "auto", input_shape=(1, 3, 4, 4))
    assert requested_layers(flat, "auto", needed=False, input_shape=(1, 3, 4, 4)) == []
