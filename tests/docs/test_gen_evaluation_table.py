"""The README's evaluation outcomes are the recorded run's (docs/gen_evaluation_table.py), and
the recording carries what the block states: intervals and verdicts with their statistics."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "docs" / "guides" / "evaluating.md"


def load_generator():
    """docs/gen_evaluation_table.py as a module (docs/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(
        "gen_evaluation_table", ROOT / "docs" / "gen_evaluation_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_evaluation_block_is_the_recorded_run():
    generator = load_generator()
    data = generator.load()
    text = README.read_text()
    block = text.split(generator.START, 1)[1].split(generator.END, 1)[0].strip()
    assert block == generator.block(data), "run `python docs/gen_evaluation_table.py --write`"
    assert len(data["images"]) == len(generator.IMAGES) == 8
    assert data["protocol"]["steps"] == generator.STEPS and data["protocol"]["random_draws"] == 8
    verdicts = data["verdicts"]
    assert {v["verdict"] for v in verdicts} <= {"better", "worse", "no evidence"}
    for v in verdicts:
        assert {"mean", "ci_low", "ci_high", "p", "effect", "verdict"} <= set(v)


def test_the_block_says_too_few_images_once():
    generator = load_generator()
    one = {
        "command": "cnnvis evaluate sample:cat",
        "methods": ["grad-cam"],
        "baselines": ["random"],
        "intervals": {
            "grad-cam": {"deletion": {"mean": 0.2, "ci_low": None, "ci_high": None, "images": 1}},
            "random": {"deletion": {"mean": 0.3, "ci_low": None, "ci_high": None, "images": 1}},
        },
        "statistics": {"alpha": 0.05},
        "verdicts": [
            {
                "method": "grad-cam",
                "baseline": "random",
                "metric": "deletion",
                "verdict": "no evidence",
                "mean": -0.1,
                "ci_low": None,
                "ci_high": None,
                "p": 1.0,
                "effect": -1.0,
            },
        ],
        "verdict_note": "1 image(s): too few to tell methods from baselines.",
    }
    text = generator.block(one)
    assert text.count("too few") == 1 and "**better**" not in text
    assert "| grad-cam | 0.200 | - |" in text
