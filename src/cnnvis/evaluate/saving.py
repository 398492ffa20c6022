"""An evaluation written to a folder (CSVs, PNGs, evaluation.json, evaluation.html), and its
machine-readable summary."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .figures import rendered
from .html_section import html_section
from .tables import (
    curves_csv,
    randomization_csv,
    scores_csv,
    summary_csv,
    verdict_row,
    verdicts_csv,
)
from .verdicts import ALPHA, EFFECT, LEVEL, RESAMPLES

if TYPE_CHECKING:
    from .result import Evaluation


def save(ev: Evaluation, folder: Path) -> dict[str, Path]:
    """Write scores.csv, summary.csv, verdicts.csv, curves.csv, randomization.csv, one PNG per figure,
    evaluation.json and evaluation.html (a full page around `html_section`)."""
    from ..html import page

    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def put(name: str, text: str) -> None:
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written[name] = path

    if ev.scores:
        put("scores.csv", scores_csv(ev))
        put("summary.csv", summary_csv(ev))
        put("verdicts.csv", verdicts_csv(ev))
    if ev.curves:
        put("curves.csv", curves_csv(ev))
    if ev.randomization:
        put("randomization.csv", randomization_csv(ev))
    pngs = rendered(ev)
    for name, png in pngs.items():
        path = folder / f"{name}.png"
        path.write_bytes(png)
        written[path.name] = path
    put("evaluation.json", json.dumps(to_json(ev), indent=2, default=str))
    put("evaluation.html", page(f"cnnvis evaluate — {ev.model}", html_section(ev, pngs)))
    return written


def to_json(ev: Evaluation) -> dict[str, Any]:
    """A machine-readable summary: protocol, means with intervals, verdicts, flags, notes,
    targets, timings (NaN written as null)."""
    comparisons = ev.comparisons()
    intervals: dict[str, dict[str, Any]] = {}
    for name in ev.maps:
        for metric in ev.metrics:
            interval = ev.interval(name, metric)
            if interval.n:
                intervals.setdefault(name, {})[metric] = {
                    "mean": interval.mean,
                    "ci_low": _number(interval.low),
                    "ci_high": _number(interval.high),
                    "images": interval.n,
                }
    return {
        "model": ev.model,
        "images": ev.images,
        "methods": ev.methods,
        "baselines": ev.baselines,
        "metrics": ev.metrics,
        "targets": {
            k: {"index": v[0], "name": v[1], "probability": v[2]} for k, v in ev.targets.items()
        },
        "summary": ev.summary(),
        "intervals": intervals,
        "statistics": {
            "difference": "method - baseline, paired by image",
            "interval": f"{LEVEL:.0%} percentile bootstrap of the mean, {RESAMPLES} resamples",
            "test": "Wilcoxon signed-rank, two-sided (zero differences dropped)",
            "effect": EFFECT,
            "alpha": ALPHA,
        },
        "verdicts": [{**verdict_row(c), "text": str(c)} for c in comparisons],
        "verdict_note": ev.verdict_note(comparisons),
        "flags": [
            {
                "method": f.method,
                "metric": f.metric,
                "baseline": f.baseline,
                "value": f.value,
                "baseline_value": f.baseline_value,
                "text": str(f),
            }
            for f in ev.flags
        ],
        "randomization": [
            {"image": r.image, "mode": r.mode, "steps": r.steps, "similarity": r.similarity}
            for r in ev.randomization
        ],
        "protocol": ev.protocol,
        "notes": ev.notes,
        "failures": ev.failures,
        "forwards": ev.forwards,
        "seconds": ev.seconds,
    }


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value
