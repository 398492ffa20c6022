"""Cost up front and progress: the forward passes announced before the run are the ones made
(counted by a forward hook on the model), the progress callback counts up to them, the quick
and thorough protocols, and the command line's bar and lines."""

from __future__ import annotations

import io
import math

import pytest
import torch

from cnnvis.evaluate import EvaluationError, evaluate
from cnnvis.evaluate.cost import evaluation_cost, metric_passes
from cnnvis.evaluate.progress import Tracker, seconds_left
from cnnvis.evaluate.protocol import PROTOCOLS
from cnnvis.evaluate.sanity import randomization_groups

from conftest import TinyCNN

SMALL = {"steps": 4, "road_fractions": (0.3, 0.7), "random_draws": 2, "batch_size": 16}


def _counted_run(model, layer, metrics, **kwargs):
    """evaluate() with a forward hook counting the images through the model, and every
    progress call."""
    rows: list[int] = []
    calls: list[tuple[int, int, str]] = []
    handle = model.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[0]))
    try:
        x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
        boxes = {"images": {"tensor[1]": [{"box": [0, 0, 8, 8]}]}}
        ev = evaluate(
            model, x, ["grad-cam", "gradient", "guided-backprop"], metrics, layer=layer,
            boxes=boxes, progress=lambda *call: calls.append(call), **kwargs,
        )  # fmt: skip
    finally:
        handle.remove()
    return ev, sum(rows), calls


@pytest.mark.parametrize("layer", [None, "conv2"])  # None: one probe forward finds the layer
def test_the_announced_forward_passes_are_the_ones_made(layer):
    metrics = ["faithfulness", "localisation", "sanity"]
    ev, made, calls = _counted_run(TinyCNN().eval(), layer, metrics, **SMALL)
    announced = calls[0][1]
    assert calls[0] == (0, announced, "start") and calls[-1] == (announced, announced, "done")
    assert made == announced == ev.planned
    done = [c[0] for c in calls]
    assert done == sorted(done) and all(c[1] == announced for c in calls)
    stages = {c[2] for c in calls}
    assert {"tensor[0]: explain", "tensor[1]: faithfulness", "tensor[0]: cascading randomization",
            "tensor[1]: independent randomization"} <= stages  # fmt: skip
    # by hand: 3 methods + 2 random draws + centre + edges = 7 maps and 3 reversed orders;
    # 3 anchors + 10 x 2 curves x 3 inner steps + 7 x (1 Average Drop + 2 x 2 ROAD) = 98 per
    # image; 1 to explain; per randomization mode 1 + 3 groups (fc, conv2, conv1)
    assert len(randomization_groups(TinyCNN())) == 3
    per_image = 1 + 98 + 2 * 4
    assert announced == 2 * per_image + (layer is None)
    assert ev.forwards == 2 * 98  # the scorer's own count agrees


def test_metric_passes_by_hand_and_the_thorough_protocol_on_the_default_model():
    # 3 maps, 1 reversed, deletion+insertion at 4 steps, Average Drop, ROAD at 2 fractions x 2
    metrics = ["deletion", "insertion", "average-drop", "road-morf", "road-lerf"]
    assert metric_passes(3, 1, metrics, 4, 2) == 3 + 4 * 2 * 3 + 3 * (1 + 2 * 2)
    assert metric_passes(3, 1, ["pointing-game"], 4, 2) == 0
    # the count: `cnnvis evaluate sample:cat` under the thorough protocol made 3,418
    # forward passes for the metrics (3 methods, 8 random draws, centre, edges, 3 reversed)
    thorough = PROTOCOLS["thorough"]
    cost = evaluation_cost(
        images=1,
        methods=["grad-cam", "gradient", "guided-backprop"],
        metrics=["deletion", "insertion", "average-drop", "increase", "road-morf", "road-lerf"],
        baselines=["random", "centre", "edges", "reversed"],
        steps=thorough.steps,
        random_draws=thorough.random_draws,
        road_fractions=len(thorough.road_fractions),
    )
    assert cost.metrics == 3418 and cost.total == 3419
    quick = PROTOCOLS["quick"]
    fast = evaluation_cost(
        images=1,
        methods=["grad-cam", "gradient", "guided-backprop"],
        metrics=["deletion", "insertion", "average-drop", "increase", "pointing-game"],
        baselines=["random", "centre", "edges", "reversed"],
        steps=quick.steps,
        random_draws=quick.random_draws,
        road_fractions=len(quick.road_fractions),
    )
    assert fast.metrics == 110 and "111 forward passes" in str(fast)


def test_protocols_set_the_defaults_and_explicit_settings_win():
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    quick = evaluate(TinyCNN().eval(), x, ["gradient"], layer="conv2")
    assert quick.protocol["protocol"] == "quick" and quick.protocol["steps"] == 6
    assert quick.metrics == ["deletion", "insertion", "average-drop", "increase"]  # no boxes
    assert quick.protocol["random_draws"] == 2
    mine = evaluate(TinyCNN().eval(), x, ["gradient"], "road", protocol="thorough", steps=3)
    assert mine.protocol["steps"] == 3 and mine.protocol["random_draws"] == 8
    assert len(mine.protocol["road_fractions"]) == 9
    with pytest.raises(EvaluationError, match="quick or thorough"):
        evaluate(TinyCNN().eval(), x, ["gradient"], protocol="fast")


def test_the_tracker_counts_up_and_the_time_left():
    calls = []
    tracker = Tracker(10, lambda *c: calls.append(c))
    tracker.begin("a")
    tracker.advance(4)
    tracker.correct(-2)  # a method could not run: 8 in all
    tracker.advance(4)
    tracker.finish()
    assert calls == [(0, 10, "start"), (0, 10, "a"), (4, 10, "a"), (8, 8, "a"), (8, 8, "done")]
    assert seconds_left(4, 10, 2.0) == 3.0 and math.isnan(seconds_left(0, 10, 1.0))


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_command_line_shows_a_line_per_stage_or_a_bar():
    from cnnvis.cli.evaluate import ProgressDisplay

    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    lines = io.StringIO()
    display = ProgressDisplay(enabled=True, stream=lines)
    evaluate(TinyCNN().eval(), x, ["gradient"], "deletion", layer="conv2", steps=4,
             progress=display)  # fmt: skip
    text = lines.getvalue().splitlines()
    assert text[0].startswith("cnnvis: tensor[0]: explain, 0/")
    assert text[1].startswith("cnnvis: tensor[0]: faithfulness, 1/")
    assert text[-1].startswith("cnnvis: done, ") and "forward passes" in text[-1]
    assert len(text) == 3  # a short run: one line per stage
    bar = _Terminal()
    display = ProgressDisplay(enabled=True, stream=bar)
    evaluate(TinyCNN().eval(), x, ["gradient"], "deletion", layer="conv2", steps=4,
             progress=display)  # fmt: skip
    assert "evaluating" in bar.getvalue() and "pass" in bar.getvalue()
    assert display.bar is None  # closed at "done"
    silent = io.StringIO()
    evaluate(TinyCNN().eval(), x, ["gradient"], "deletion", layer="conv2", steps=4,
             progress=ProgressDisplay(enabled=False, stream=silent))  # fmt: skip
    assert silent.getvalue() == ""


def test_the_command_passes_the_protocol(monkeypatch):
    import cnnvis.cli.evaluate as command
    from cnnvis.cli.main import build_parser

    seen = {}
    monkeypatch.setattr(command, "evaluate", lambda *a, **k: seen.update(k))
    for argv, protocol in (([], "quick"), (["--thorough"], "thorough")):
        args = build_parser().parse_args(["evaluate", "sample:cat", *argv])
        command._evaluate(args, None, ["sample:cat"], ["gradient"], "auto", None, None)
        assert seen["protocol"] == protocol
        assert seen["steps"] is None and seen["random_draws"] is None  # the protocol's
        assert seen["road_fractions"] is None
