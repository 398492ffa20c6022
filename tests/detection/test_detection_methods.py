"""Every registered method on a detector with a box target: a map or a MethodError saying
why; D-RISE as a registered method (`drise`) equals `cnnvis.detection.drise` and needs a box."""

from __future__ import annotations

import pytest
import torch
from scenes import trained_detector, two_shapes

import cnnvis
from cnnvis.detection import drise
from cnnvis.errors import MethodError

LAYER = "features.10"
FAST = {"rise": {"masks": 64, "cells": 4}, "drise": {"masks": 64, "grid": 4}}
NO_MAP = {"cam": "linear head", "lrp": "output tensor"}  # and why


@pytest.mark.parametrize("info", cnnvis.list_methods(), ids=lambda m: m.name)
def test_every_method_gives_a_box_map_or_says_why(info):
    image, _, _ = two_shapes()
    layer = LAYER if info.needs_layer else None
    params = FAST.get(info.name, {})
    if info.name in NO_MAP:
        with pytest.raises(MethodError, match=NO_MAP[info.name]):
            cnnvis.explain(trained_detector(), image[None], info.name, layer, "box:0", **params)
        return
    e = cnnvis.explain(trained_detector(), image[None], info.name, layer, "box:0", **params)
    assert e.map.shape[0] == 1 and e.map.shape[-2:] == (64, 64)
    assert bool(torch.isfinite(e.map).all()) and float(e.map.abs().sum()) > 0
    assert e.target_names == ["box:0"]


def test_drise_method_is_the_detection_function_per_image():
    image, _, _ = two_shapes()
    batch = torch.stack([image, image.flip(-1)])
    e = cnnvis.explain(
        trained_detector(), batch, "drise", None, ["box:0", "box:1"], seed=3, **FAST["drise"]
    )
    assert e.map.shape == (2, 3, 64, 64) and torch.equal(e.map[:, 0], e.map[:, 2])
    for n, box in ((0, 0), (1, 1)):
        reference = drise(trained_detector(), batch[n], box, 64, grid=4, seed=3)
        torch.testing.assert_close(e.map[n, 0], reference)


def test_drise_needs_a_box_target():
    image, _, _ = two_shapes()
    with pytest.raises(MethodError, match=r"drise explains a detected box.*box:0"):
        cnnvis.explain(
            trained_detector(), image[None], "drise", None, lambda out: out[0]["scores"][:1]
        )
    classifier = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    )
    with pytest.raises(MethodError, match="use 'rise' for a class"):
        cnnvis.explain(classifier, torch.rand(1, 3, 16, 16), "drise", None, 1)
    with pytest.raises(MethodError, match="probability"):
        cnnvis.explain(trained_detector(), image[None], "drise", None, "box:0", probability=1.0)
