"""A detector's findings drawn over the image: every box with its label and score, the
explained one highlighted, and beside it the explanation's map with that box."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .panels import SUPTITLE_SIZE, TITLE_SIZE, drawing
from .pictures import image_array, overlay

if TYPE_CHECKING:
    from cnnvis.detection import Detections

OTHER = "#00e5ff"  # every detected box
CHOSEN = "#ffd400"  # the explained one


def box_label(detections: Detections, i: int, categories: Sequence[str] | None = None) -> str:
    """'box:i name 0.91' for detection i (the label index where no names are known)."""
    label = int(detections.labels[i])
    name = categories[label] if categories and 0 <= label < len(categories) else str(label)
    return f"box:{i} {name} {float(detections.scores[i]):.2f}"


def _draw_boxes(
    ax: object,
    detections: Detections,
    highlight: int | None,
    categories: Sequence[str] | None,
    only_highlight: bool = False,
) -> None:
    found = detections.detach()
    order = [i for i in range(len(found)) if i != highlight]
    order += [highlight] if highlight is not None and 0 <= highlight < len(found) else []
    for i in order:
        chosen = i == highlight
        if only_highlight and not chosen:
            continue
        x0, y0, x1, y1 = (float(v) for v in found.boxes[i])
        colour = CHOSEN if chosen else OTHER
        ax.add_patch(  # type: ignore[attr-defined]
            Rectangle(
                (x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, lw=3 if chosen else 1.2
            )
        )
        ax.text(  # type: ignore[attr-defined]
            x0,
            y0,
            box_label(found, i, categories),
            color="black",
            fontsize=TITLE_SIZE - (0 if chosen else 1),
            fontweight="bold" if chosen else "normal",
            va="bottom",
            bbox={"facecolor": colour, "edgecolor": "none", "pad": 1, "alpha": 0.85},
        )


@drawing
def detections_figure(
    image: torch.Tensor,
    detections: Detections,
    highlight: int | None = None,
    *,
    categories: Sequence[str] | None = None,
    map2d: torch.Tensor | None = None,
    title: str | None = None,
    cmap: str = "jet",
    alpha: float = 0.5,
    panel_size: float = 4.0,
) -> Figure:
    """The image (3, H, W) in [0, 1] with every detection (box, label, score; boxes in the
    image's pixels) and detection `highlight` drawn thick in yellow; with `map2d` (an
    explanation's map, (H, W) or (C, H, W), summed over channels), a second panel shows the
    map's positive part over the image with the highlighted box."""
    picture = image_array(image)
    panels = 1 if map2d is None else 2
    fig = Figure(figsize=(panel_size * panels, panel_size + 0.4))
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, panels, p + 1) for p in range(panels)]
    axes[0].imshow(picture)
    _draw_boxes(axes[0], detections, highlight, categories)
    axes[0].set_title(f"{len(detections)} detections", fontsize=TITLE_SIZE)
    if map2d is not None:
        flat = map2d.detach().float().cpu()
        flat = flat.sum(0) if flat.dim() == 3 else flat
        axes[1].imshow(overlay(image, flat.clamp(min=0), alpha=alpha, cmap=cmap))
        _draw_boxes(axes[1], detections, highlight, categories, only_highlight=True)
        axes[1].set_title("explanation (positive part)", fontsize=TITLE_SIZE)
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=SUPTITLE_SIZE)
    fig.tight_layout()
    return fig
