"""Whole figures: the explanation figure (the tutorial's panel), the methods compared, the
per-layer sweep grid; and figures drawn to PNG bytes or files."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure

from cnnvis import errors
from cnnvis.explanation import Explanation, Sweep
from cnnvis.postprocess import RESCALE_MODES, DisplayError

from .display import main_mode, method_sign, mode_label
from .panels import (
    DRAW_LOCK,
    TITLE_SIZE,
    Panel,
    cam_panel,
    drawing,
    grid_figure,
    image_panel,
    pixel_panel,
    side_by_side,
    wrap,
)
from .pictures import PIXEL_MODES, check_index, colormap

# figures


def _as_list(explanations: Explanation | Sequence[Explanation]) -> list[Explanation]:
    """A non-empty list of explanations (a single one is accepted)."""
    items = [explanations] if isinstance(explanations, Explanation) else list(explanations)
    if not items:
        raise DisplayError("nothing to draw: give at least one Explanation")
    for item in items:
        if not isinstance(item, Explanation):
            raise DisplayError(f"expected Explanation objects, got {type(item).__name__}")
    return items


def _method_title(explanation: Explanation) -> str:
    """'grad-cam @ layer4', or the method alone when it has no layer."""
    if explanation.layer:
        return f"{explanation.method} @ {explanation.layer}"
    return explanation.method


def _one_image(
    explanations: Explanation | Sequence[Explanation], index: int, cmap: str
) -> tuple[list[Explanation], torch.Tensor, bool]:
    """The explanations of a one-image figure as a list (checked: image `index` exists, `cmap`
    is a colormap), that image, and whether they explain several targets."""
    items = _as_list(explanations)
    colormap(cmap)
    for item in items:
        check_index(item, index)
    several = len({(e.targets[index], e.target_names[index]) for e in items}) > 1
    return items, items[0].images[index], several


def _panel_title(explanation: Explanation, index: int, several_targets: bool) -> str:
    """The method's title, and the target of image `index` when the panels explain several."""
    target = f"\n→ {explanation.target_names[index]}" if several_targets else ""
    return _method_title(explanation) + target


def _target_label(explanation: Explanation, index: int) -> str:
    """'Egyptian cat (285), p = 0.63'."""
    name = explanation.target_names[index]
    if explanation.targets[index] < 0:  # a unit target such as layer4:17@sum
        return f"unit {name}"
    return f"{name} ({explanation.targets[index]}), p = {explanation.probabilities[index]:.2f}"


def _figure_title(first: Explanation, index: int, several_targets: bool = False) -> str:
    """The suptitle: the explained class and its probability (and the model, if named, and
    "random weights" when it was random-init)."""
    model = "" if first.model in ("", "custom") else f"  ·  {first.model}"
    if first.random_weights:
        model += "  ·  random weights"
    what = "several targets (see each panel)" if several_targets else _target_label(first, index)
    return f"explaining: {what}{model}"


def _notes(items: Sequence[Explanation]) -> list[str]:
    """The explanations' notes, each once, in order (a method's caveats, loading notes)."""
    return list(dict.fromkeys(note for e in items for note in e.notes))


def _pixel_panel(image: torch.Tensor, e: Explanation, index: int, mode: str, title: str) -> Panel:
    """One display mode of image `index`'s pixel map, titled with the mode's words."""
    return pixel_panel(
        image, e.map[index], mode, f"{title} ({mode_label(e, mode)})", method_sign(e)
    )


@drawing
def explanation_figure(
    explanations: Explanation | Sequence[Explanation],
    index: int = 0,
    cmap: str = "jet",
    *,
    ncols: int = 4,
    panel_size: float = 2.6,
    alpha: float = 0.5,
) -> Figure:
    """The tutorial's panel for one image: the input, then every explanation of that image.

    Pixel-space maps get a row each: colour all / pos / neg (`pictures.pixel_display`: each
    scaled by its own 99th percentile) and the map's main display with a colorbar: the
    tutorial's grayscale labelled |map|, or, for a signed method, the signed map on a diverging
    colormap centred at zero (RISE: minus its mean). The input and the CAM-style maps over it
    (ReLU, min-max, `cmap`, with a colorbar) go down the left column, or, without pixel-space
    maps, flow in rows of `ncols`. Notes (a method's known caveats on this model) go below.
    """
    items, image, several = _one_image(explanations, index, cmap)

    def title(e: Explanation) -> str:
        return _panel_title(e, index, several)

    head = [image_panel(image, "input")]
    head += [
        cam_panel(image, e.map[index], title(e), cmap, alpha) for e in items if e.kind == "cam"
    ]
    pixel_rows = [
        [_pixel_panel(image, e, index, m, title(e)) for m in (*RESCALE_MODES, main_mode(e))]
        for e in items
        if e.kind == "pixel"
    ]
    grid = side_by_side(head, pixel_rows) if pixel_rows else wrap(head, ncols)
    suptitle = _figure_title(items[0], index, several)
    return grid_figure(grid, panel_size, TITLE_SIZE, suptitle, notes=_notes(items))


@drawing
def comparison_figure(
    explanations: Explanation | Sequence[Explanation],
    index: int = 0,
    cmap: str = "jet",
    *,
    ncols: int | None = None,
    panel_size: float = 2.6,
    alpha: float = 0.5,
) -> Figure:
    """Several methods side by side for one image: the input, then one panel per method.

    Each method gets its main display (`display.main_mode`), with its colorbar: CAM-style maps
    over the image (ReLU, min-max, `cmap`); signed pixel maps on a diverging colormap centred
    at zero (RISE minus its mean); the others as the tutorial's grayscale, labelled |map|.
    Up to five panels sit in one row; more flow into balanced rows; notes go below.
    """
    items, image, several = _one_image(explanations, index, cmap)
    panels = [image_panel(image, "input")]
    for e in items:
        title = _panel_title(e, index, several)
        if e.kind == "cam":
            panels.append(cam_panel(image, e.map[index], title, cmap, alpha))
        else:
            panels.append(_pixel_panel(image, e, index, main_mode(e), title))
    n = len(panels)
    columns = ncols or (n if n <= 5 else math.ceil(n / math.ceil(n / 5)))
    suptitle = f"methods compared  ·  {_figure_title(items[0], index, several)}"
    grid = wrap(panels, columns)
    return grid_figure(grid, panel_size, TITLE_SIZE, suptitle, notes=_notes(items))


def _shape_label(shape: Sequence[int]) -> str:
    """'512x14x14' for an output shape (1, 512, 14, 14): a 4-d shape loses its batch dimension."""
    dims = tuple(shape)[1:] if len(shape) == 4 else tuple(shape)
    return "x".join(str(d) for d in dims)


@drawing
def sweep_figure(
    sweep: Sweep,
    index: int = 0,
    cmap: str = "jet",
    *,
    pixel_mode: str = "gray",
    ncols: int | None = None,
    panel_size: float = 1.9,
    alpha: float = 0.5,
) -> Figure:
    """One panel per layer of a sweep, titled with the layer's name and output shape.

    The input comes first. CAM-style sweeps are drawn over the image (ReLU, min-max, `cmap`);
    pixel-space sweeps (e.g. guided Grad-CAM) as `pixel_mode` ("gray", the tutorial's choice, or
    "all" / "pos" / "neg"). One shared colorbar sits at the right.
    """
    if not isinstance(sweep, Sweep) or len(sweep) == 0:
        raise DisplayError("nothing to draw: the sweep has no layers")
    colormap(cmap)
    if pixel_mode not in PIXEL_MODES:
        raise DisplayError(errors.unknown("pixel display mode", str(pixel_mode), PIXEL_MODES))
    first = next(iter(sweep.explanations.values()))
    check_index(first, index)
    image = first.images[index]
    panels = [image_panel(image, "input")]
    for layer, e in sweep.explanations.items():
        title = f"{layer}\n{_shape_label(sweep.shapes.get(layer, ()))}"
        if e.kind == "cam":
            panels.append(cam_panel(image, e.map[index], title, cmap, alpha))
        else:
            panels.append(pixel_panel(image, e.map[index], pixel_mode, title, method_sign(e)))
    grid = wrap(panels, ncols or _sweep_columns(len(panels)))
    bar = cmap if first.kind == "cam" else ("gray" if pixel_mode == "gray" else None)
    suptitle = f"{sweep.method} per layer  ·  {_figure_title(first, index)}"
    notes = _notes(list(sweep.explanations.values()))
    return grid_figure(grid, panel_size, TITLE_SIZE - 1, suptitle, shared_bar=bar, notes=notes)


def _sweep_columns(n: int) -> int:
    """Columns for n panels: one row up to 6, else about twice as wide as tall, at most 8."""
    return n if n <= 6 else min(8, math.ceil(math.sqrt(2 * n)))


# files


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure drawn as PNG bytes (thread-safe: draws are serialized by DRAW_LOCK)."""
    buffer = io.BytesIO()
    with DRAW_LOCK:
        fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write the figure as PNG (parent folders created) and release its contents."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(figure_png(fig, dpi))
    fig.clear()
    return path
