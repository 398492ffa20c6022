"""`evaluate` end to end on a tiny model: determinism, comparisons and flags, the user's model untouched, the
table, CSV, figures, HTML (a page, and a section of the report) and files; the `evaluate`
command."""

from __future__ import annotations

import argparse
import csv
import io

import pytest
import torch
from matplotlib.figure import Figure

import cnnvis.evaluate as ev_module
from cnnvis.evaluate import METRICS, EvaluationError, evaluate, resolve_metrics
from cnnvis.evaluate.result import Evaluation, Score

from conftest import TinyCNN

FAST = {"steps": 4, "road_fractions": (0.3, 0.7), "random_draws": 2, "batch_size": 16}


@pytest.fixture(scope="module")
def tiny_eval():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    boxes = {"images": {"tensor[0]": [{"box": [0, 0, 8, 16]}]}}
    return evaluate(
        TinyCNN().eval(), x, ["grad-cam", "gradient"], "all", boxes=boxes, **FAST, seed=7
    )


def test_the_package_is_callable_and_keeps_its_modules():
    assert callable(ev_module) and ev_module.evaluate is evaluate
    from cnnvis.evaluate import bench

    assert callable(bench.deletion_insertion_ratio)


def test_every_metric_for_every_map(tiny_eval):
    assert tiny_eval.methods == ["grad-cam", "gradient"]
    assert tiny_eval.baselines == [
        "random", "centre", "edges", "reversed:grad-cam", "reversed:gradient",
    ]  # fmt: skip
    summary = tiny_eval.summary()
    for name in [*tiny_eval.methods, "random", "centre", "edges"]:
        assert set(summary[name]) == set(METRICS), name
    reversed_metrics = {"deletion", "insertion", "road-morf", "road-lerf"}
    assert set(summary["reversed:gradient"]) == reversed_metrics  # an order, not a map
    assert tiny_eval.count("pointing-game") == 1 and tiny_eval.count("deletion") == 2
    assert [r.mode for r in tiny_eval.randomization] == ["cascading", "independent"] * 2
    assert not any("#" in s.map for s in tiny_eval.scores)  # random draws merged


def test_reversed_road_is_the_methods_road_swapped(tiny_eval):
    for image in tiny_eval.images:
        assert tiny_eval.value("reversed:gradient", "road-morf", image) == tiny_eval.value(
            "gradient", "road-lerf", image
        )


def test_same_seed_same_numbers_other_seed_other_random_baseline():
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    runs = [
        evaluate(TinyCNN().eval(), x, ["gradient"], "faithfulness", **FAST, seed=s)
        for s in (5, 5, 6)
    ]
    key = [(s.map, s.metric, s.value) for s in runs[0].scores]
    assert key == [(s.map, s.metric, s.value) for s in runs[1].scores]
    assert runs[0].value("random", "deletion") != runs[2].value("random", "deletion")
    assert runs[0].value("gradient", "road-morf") != runs[2].value("gradient", "road-morf")


def test_the_users_model_is_left_as_it_was():
    model = TinyCNN(inplace=True).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    evaluate(model, x, ["guided-backprop"], ["deletion", "cascading"], **FAST)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())


def test_each_method_is_compared_with_the_shared_baselines_and_its_own_reversed_order():
    """Reversed orders only on the order-based metrics, never another method's; the direction
    of the metric decides better or worse (8 images, every pair differing the same way)."""
    images = [f"i{k}" for k in range(8)]
    ev = Evaluation(
        "m", ["a", "b"], ["random", "centre", "reversed:a", "reversed:b"],
        ["deletion", "pointing-game"], images, {},
    )  # fmt: skip
    for k, i in enumerate(images):
        small = 0.01 * k
        ev.scores += [
            Score(i, "a", "method", "deletion", 0.2 + small),
            Score(i, "b", "method", "deletion", 0.2 + small),
            Score(i, "random", "baseline", "deletion", 0.3 + 2 * small),
            Score(i, "centre", "baseline", "deletion", 0.1),
            Score(i, "reversed:a", "baseline", "deletion", 0.2 + small),
            Score(i, "reversed:b", "baseline", "deletion", 0.5),
            Score(i, "a", "method", "pointing-game", 1.0),
            Score(i, "centre", "baseline", "pointing-game", 1.0),
        ]
    verdicts = {(c.method, c.baseline, c.metric): c.verdict for c in ev.comparisons()}
    assert verdicts == {
        ("a", "random", "deletion"): "better",
        ("a", "centre", "deletion"): "worse",
        ("a", "reversed:a", "deletion"): "no evidence",  # a tie on every image
        ("a", "centre", "pointing-game"): "no evidence",
        ("b", "random", "deletion"): "better",
        ("b", "centre", "deletion"): "worse",
        ("b", "reversed:b", "deletion"): "better",
    }
    text = ev.table()
    assert "! a worse than centre on deletion↓" in text
    assert "no evidence either way in 2 of 7 comparisons" in text


def test_a_map_that_survives_randomization_is_flagged():
    from cnnvis.evaluate import RandomizationResult

    steps = ["trained", "fc", "conv"]
    same = {"spearman-abs": [1.0, 0.95, 0.2], "spearman": [1.0, 0.9, 0.1]}
    moved = {"spearman-abs": [1.0, 0.6, 0.1], "spearman": [1.0, 0.2, 0.0]}
    result = RandomizationResult("cascading", "i", 0, "c", steps, {"a": same, "b": moved})
    ev = Evaluation("m", ["a", "b"], [], ["cascading"], ["i"], {}, randomization=[result])
    assert [(f.method, f.baseline) for f in ev.flags] == [("a", "after fc")]
    assert "does not depend on those weights" in str(ev.flags[0])
    assert "! map ignores randomized weights:" in ev.table()
    assert "verdicts" not in ev.table()


def test_metric_names_and_groups():
    assert resolve_metrics(None)[0] == [*[m for m in METRICS]]
    assert resolve_metrics("road,cascading")[0] == ["road-morf", "road-lerf", "cascading"]
    assert resolve_metrics(["pointing-game"]) == (["pointing-game"], True)
    with pytest.raises(EvaluationError, match="did you mean"):
        resolve_metrics("delection")


def test_bad_protocol_settings():
    x = torch.randn(1, 3, 16, 16)
    for bad in ({"steps": 0}, {"road_fractions": (0.0, 0.5)}, {"baselines": ("noise",)}):
        with pytest.raises(EvaluationError):
            evaluate(TinyCNN().eval(), x, ["gradient"], "deletion", **{**FAST, **bad})
    with pytest.raises(EvaluationError, match="no image had a box"):
        evaluate(TinyCNN().eval(), x, ["gradient"], "pointing-game", boxes={"images": {}})


def test_table_csv_figures_html_and_files(tiny_eval, tmp_path):
    text = tiny_eval.table()
    assert "grad-cam" in text and "baselines:" in text and "deletion↓" in text
    assert "cascading randomization" in text
    rows = list(csv.DictReader(io.StringIO(tiny_eval.to_csv())))
    assert len(rows) == len(tiny_eval.scores) and {"image", "map", "metric", "value"} <= set(
        rows[0]
    )
    figs = tiny_eval.figures()
    assert {
        "summary",
        "curves-tensor_0_",
        "randomization-cascading",
        "randomization-independent",
        "randomization-cascading-maps-tensor_0_",  # the paper's figure: maps per step
    } <= set(figs)
    assert all(isinstance(f, Figure) for f in figs.values())
    written = tiny_eval.save(tmp_path)
    html = (tmp_path / "evaluation.html").read_text()
    assert "<section class='cnnvis-eval' id='evaluation'>" in html
    assert html.count("data:image/png;base64,") == len(figs)
    for name in ("scores.csv", "summary.csv", "verdicts.csv", "curves.csv", "randomization.csv",
                 "evaluation.html", "evaluation.json", "summary.png"):  # fmt: skip
        assert (tmp_path / name).is_file() and name in written


def test_the_evaluation_is_a_section_of_the_html_report(tiny_eval, tmp_path):
    from cnnvis.run_report import write_report

    run = {"command": "explain", "model": "tiny", "methods": ["grad-cam"]}
    entry = {"source": "a.png", "folder": "a", "files": {}, "target": {"index": 1, "name": "x"}}
    page = write_report(tmp_path, run, [entry], evaluation=tiny_eval.html()).read_text()
    assert "<a href='#evaluation'>evaluation</a>" in page
    section = page.index("<section class='cnnvis-eval' id='evaluation'>")
    assert page.index("<section class='image' id='image-1'>") < section < page.index("<footer>")
    assert "reversed:grad-cam" in page[section:] and "data:image/png;base64," in page[section:]
    plain = write_report(tmp_path / "plain", run, [entry]).read_text()
    assert "cnnvis-eval" not in plain and "#evaluation" not in plain


def _parse(argv: list[str]) -> argparse.Namespace:
    from cnnvis.cli.main import build_parser

    return build_parser().parse_args(["evaluate", *argv])


def test_the_command(tmp_path, capsys):
    from cnnvis.cli.evaluate import run as cmd_evaluate

    out = tmp_path / "out"
    args = _parse(["sample:cat", "--methods", "grad-cam", "--metrics", "deletion,pointing-game",
                   "--steps", "2", "--random-draws", "1", "--baselines", "random,centre",
                   "--out", str(out)])  # fmt: skip
    assert args.run is cmd_evaluate
    args.quiet, args.debug = True, False
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # runtime only: see test_evaluate_known.one_thread
    try:
        assert cmd_evaluate(args) == 0
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert "grad-cam" in printed and "pointing-game" in printed and "evaluation.html" in printed
    assert (out / "scores.csv").is_file() and (out / "evaluation.html").is_file()
    args = _parse(["sample:cat", "--metrics", "deletion", "--target", "blocks.3:1", "--no-files"])
    with pytest.raises(EvaluationError, match="class"):
        cmd_evaluate(args)
    args = _parse([str(tmp_path / "missing.png"), "--no-files"])
    assert cmd_evaluate(args) == 3


def test_the_benchmark_function_runs_and_counts_forwards():
    from cnnvis.evaluate.bench import deletion_insertion_ratio

    found = deletion_insertion_ratio(TinyCNN().eval(), steps=5, batch_size=4, repeats=1, size=16)
    assert found["forward_passes"] == 10 and found["evaluation_forward_passes"] == 11
    assert found["ratio"] > 0 and found["evaluation_s"] > 0 and found["target"] == 1.2


def test_save_refuses_a_folder_of_someone_elses_files(tiny_eval, tmp_path):
    """Evaluation.save writes into a new, empty or cnnvis folder; a folder holding other files
    is refused (nothing in it changes) unless force=True."""
    from cnnvis.errors import OutputError

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "evaluation.html").write_text("my own page")
    with pytest.raises(OutputError, match="force=True"):
        tiny_eval.save(theirs)
    assert [p.name for p in theirs.iterdir()] == ["evaluation.html"]
    assert (theirs / "evaluation.html").read_text() == "my own page"
    tiny_eval.save(theirs, force=True)
    assert (theirs / "evaluation.html").read_text() != "my own page"
    again = tmp_path / "again"
    tiny_eval.save(again)
    tiny_eval.save(again)  # a cnnvis output: written again without force
