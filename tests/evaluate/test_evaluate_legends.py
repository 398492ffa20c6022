"""Evaluation figures: legends sit off the curves (outside the axes), inside the figure."""

from __future__ import annotations

import torch

from cnnvis.evaluate import RandomizationResult
from cnnvis.evaluate.faithfulness import Curve
from cnnvis.evaluate.figures import curves_figure, randomization_curves_figure
from cnnvis.evaluate.result import Evaluation


def evaluation() -> Evaluation:
    fractions = torch.linspace(0, 1, 11)
    names = ["grad-cam", "gradient", "random", "centre", "edges", "reversed:grad-cam"]
    curves = [
        Curve("i", name, metric, fractions, (1 - fractions) ** (k + 1) * 0.9, 0.1 * k)
        for metric in ("deletion", "insertion")
        for k, name in enumerate(names)
    ]
    steps = ["trained", "fc", "conv2", "conv1"]
    similarity = {"spearman-abs": [1.0, 0.8, 0.5, 0.2], "ssim": [1.0, 0.7, 0.4, 0.1]}
    randomization = [
        RandomizationResult("cascading", "i", 0, "c", steps, {"grad-cam": similarity}),
    ]
    return Evaluation(
        "m",
        ["grad-cam", "gradient"],
        ["random", "centre", "edges"],
        ["deletion", "insertion", "cascading"],
        ["i"],
        {"i": (0, "c", 0.9)},
        curves=curves,
        randomization=randomization,
    )


def overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def check_legends_off_the_plots(fig) -> int:
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    plots = [ax for ax in fig.axes if ax.lines]
    legends = [ax.get_legend() for ax in plots if ax.get_legend() is not None]
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in plots:
            assert not overlaps(box, ax.get_window_extent(renderer)), ax.get_title()
        width, height = fig.canvas.get_width_height()
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height
    return len(legends)


def test_curve_legends_never_cover_the_curves():
    ev = evaluation()
    assert check_legends_off_the_plots(curves_figure(ev, "i")) == 2


def test_randomization_legend_never_covers_the_curves():
    assert check_legends_off_the_plots(randomization_curves_figure(evaluation(), "cascading")) == 1
