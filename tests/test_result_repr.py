"""Results print as one short line (method, layers, shapes, what was explained), never as a
dump of their tensors."""

from __future__ import annotations

import torch

import cnnvis
from cnnvis.evaluate.faithfulness import Curve
from cnnvis.evaluate.result import Evaluation, Score


def test_explanation_repr_is_one_short_line(tiny_cnn, tiny_input):
    e = cnnvis.explain(tiny_cnn, tiny_input, "grad-cam", layer="relu2", target=[1, 2, 3])
    text = repr(e)
    assert text == (
        "Explanation(grad-cam @ relu2, 3 images, map (3, 16, 16), layer_map (3, 8, 8), "
        "target class 1, class 2, class 3, model TinyCNN)"
    )
    assert repr(e[0]).startswith("Explanation(grad-cam @ relu2, 1 image, map (1, 16, 16)")
    pixel = cnnvis.explain(tiny_cnn, tiny_input[:1], "gradient", target=4)
    assert repr(pixel) == (
        "Explanation(gradient, 1 image, map (1, 3, 16, 16), target class 4, model TinyCNN)"
    )


def test_sweep_repr_names_its_layers(tiny_cnn, tiny_input):
    sweep = cnnvis.sweep(tiny_cnn, tiny_input[:1], "grad-cam", layers=["conv1", "relu1", "conv2"])
    assert repr(sweep) == (
        "Sweep(grad-cam, 3 layers: conv1, relu1, conv2, 1 image, maps (1, 16, 16))"
    )


def test_evaluation_repr_counts_instead_of_dumping():
    curve = Curve("a.png", "grad-cam", "deletion", torch.linspace(0, 1, 500), torch.rand(500), 0.25)
    result = Evaluation(
        model="tiny",
        methods=["grad-cam", "gradient", "rise", "occlusion"],
        baselines=["random", "centre"],
        metrics=["deletion"],
        images=["a.png"],
        targets={"a.png": (1, "cat", 0.5)},
        scores=[Score("a.png", "grad-cam", "method", "deletion", 0.25)],
        curves=[curve],
        seconds=12.34,
    )
    assert repr(result) == (
        "Evaluation(model tiny, methods grad-cam, gradient, rise, ... (4 in all), baselines "
        "random, centre, metrics deletion, 1 image, 1 scores, 1 curves, 12.3 s)"
    )
    assert repr(curve) == "Curve(deletion of grad-cam on a.png: 500 points, value 0.2500)"


def test_named_classes_and_units_in_the_repr():
    e = cnnvis.Explanation(
        method="gradient",
        map=torch.zeros(2, 3, 4, 4),
        targets=[281, -1],
        target_names=["tabby", "layer4:17"],
        probabilities=[0.5, float("nan")],
        images=torch.zeros(2, 3, 4, 4),
        model="m",
    )
    assert "target 281 tabby, layer4:17," in repr(e) and len(repr(e)) < 120
