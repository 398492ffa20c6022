"""Long work reports its progress to a callback (`cnnvis.progress.reporting`): the maps of an
explanation, each multi-pass method's passes, feature visualization's steps; the command line
shows it as a bar on a terminal and as lines elsewhere, and --quiet silences it."""

from __future__ import annotations

import argparse

import pytest
import torch

import cnnvis
from cnnvis.cli.common import Progress, StageProgress
from cnnvis.progress import report, reporting


def heard(work) -> list[tuple[str, int, int]]:
    calls: list[tuple[str, int, int]] = []
    with reporting(lambda stage, done, total: calls.append((stage, done, total))):
        work()
    return calls


def test_multi_pass_methods_report_their_passes_under_their_name(tiny_cnn, tiny_input):
    """Integrated gradients over 3 images x 8 steps, 6 path points a pass: 4 passes; Score-CAM
    at relu2 (8 channels x 3 images = 24 masked rows, 5 a pass): 5 passes."""
    calls = heard(
        lambda: cnnvis.explain_many(
            tiny_cnn,
            tiny_input,
            ["integrated-gradients", "score-cam", "grad-cam"],
            layers="relu2",
            params={
                "integrated-gradients": {"steps": 8, "batch_size": 6},
                "score-cam": {"batch_size": 5, "reuse": False},
            },
        )
    )
    ig = [c for c in calls if c[0] == "integrated-gradients"]
    assert ig == [("integrated-gradients", d, 24) for d in (6, 12, 18, 24)]
    score = [c for c in calls if c[0] == "score-cam @ relu2"]
    assert score == [("score-cam @ relu2", d, 24) for d in (5, 10, 15, 20, 24)]
    maps = [c for c in calls if c[0] == "maps"]
    assert maps == [("maps", d, 3) for d in (0, 1, 2, 3)]
    assert calls.index(ig[-1]) < calls.index(("maps", 1, 3)) < calls.index(score[0])


def test_feature_visualization_reports_its_steps(tiny_cnn):
    calls = heard(lambda: cnnvis.features.maximize(tiny_cnn, 1, steps=3, size=16))
    assert calls == [("features", 1, 3), ("features", 2, 3), ("features", 3, 3)]


def test_no_callback_no_cost_and_nesting_restores():
    report("x", 1, 2)  # nobody listens: nothing happens
    outer = heard(lambda: heard(lambda: report("inner", 1, 1)) and report("outer", 1, 1))
    assert outer == [("outer", 1, 1)]


def _args(**flags) -> argparse.Namespace:
    return argparse.Namespace(quiet=flags.get("quiet", False), json=flags.get("json", False))


def test_stage_lines_when_not_on_a_terminal(capsys, monkeypatch):
    """Off a terminal, a stage that runs long enough gets lines: how far, and when it ended;
    short stages stay silent, and --quiet / --json say nothing."""
    stages = StageProgress(_args())
    for done in range(0, 5):
        stages("score-cam @ bn2", done, 4)
    assert capsys.readouterr().err == ""  # fast: not worth a line
    monkeypatch.setattr(Progress, "LINE_AFTER", 0.0)
    for done in range(0, 5):
        stages("score-cam @ bn2", done, 4)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("cnnvis: score-cam @ bn2: 1/4 rows (25%), ")
    assert err[-1].startswith("cnnvis: score-cam @ bn2: done in ")
    for flags in ({"quiet": True}, {"json": True}):
        quiet = StageProgress(_args(**flags))
        for done in range(0, 5):
            quiet("features", done, 4)
        assert capsys.readouterr().err == ""


@pytest.mark.parametrize("quiet", [False, True])
def test_cli_explain_shows_a_multi_pass_methods_progress(tmp_path, capsys, monkeypatch, quiet):
    from cnnvis.cli import main

    monkeypatch.setattr(Progress, "LINE_AFTER", 0.0)
    argv = ["explain", "--model", "torchvision:resnet18", "--weights", "none"]
    argv += ["--method", "integrated-gradients", "--out", str(tmp_path)]
    argv += [
        "--param",
        "integrated-gradients.steps=4",
        "--param",
        "integrated-gradients.batch_size=2",
    ]
    code = main([*argv, *(["--quiet"] if quiet else [])])
    err = capsys.readouterr().err
    assert code == 0, err
    lines = [line for line in err.splitlines() if "integrated-gradients:" in line]
    if quiet:
        assert lines == []
    else:
        assert lines[0].startswith("cnnvis: integrated-gradients: 2/4 rows (50%)")
        assert lines[-1].startswith("cnnvis: integrated-gradients: done in ")
    assert torch.get_num_threads() >= 1
