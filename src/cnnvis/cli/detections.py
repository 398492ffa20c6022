"""`cnnvis explain --target box:N` on a detector: each image's detections printed and drawn
(`detections.png`: every box with its label and score, the explained one highlighted, beside
the first map)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..api import prepare_inputs
from ..detection import BoxTarget, detect
from ..explanation import Explanation
from ..model import LoadedModel
from ..render import detections_figure, save_figure

FILE = "detections.png"


def write_detections(
    model: LoadedModel,
    target: BoxTarget,
    sources: Sequence[str],
    images: Sequence[Any],
    folders: Sequence[Path],
    explanations: Sequence[Explanation],
    *,
    say: bool = True,
) -> list[Path]:
    """Print each image's detections (unless `say` is False: --json, --quiet) and write its
    `detections.png`; the files written."""
    x, display = prepare_inputs(model, list(images))
    written = []
    for n, found in enumerate(detect(model, x)):
        chosen = target.chosen(found)
        if say:
            print(f"{sources[n]}: {len(found)} detections: {found.describe(model.categories)}")
            print(f"{sources[n]}: explaining {target} (drawn in yellow in {FILE})")
        first = explanations[0] if explanations else None
        fig = detections_figure(
            display[n],
            found,
            chosen,
            categories=model.categories,
            map2d=None if first is None else first.map[n],
            title=f"{sources[n]}: {target}" + ("" if first is None else f" ({first.method})"),
        )
        written.append(save_figure(fig, folders[n] / FILE))
    return written
