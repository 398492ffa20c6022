"""Figure layout: panels (a picture, a title, an optional colorbar) placed by hand on a grid,
and the lock that serializes matplotlib's drawing across threads."""

from __future__ import annotations

import functools
import textwrap
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from cnnvis.methods.facts import Sign
from cnnvis.postprocess import is_blank, relu

from .display import DIVERGING
from .pictures import colormap, cpu_copy, image_array, overlay, pixel_display, pixel_map_batch

# matplotlib's text layout and font objects are shared by every figure of a process and are not
# safe to use from two threads at once (seen: two threads building and drawing the same figure
# gave different PNGs): building figures and drawing them to PNG are serialized by this lock.
DRAW_LOCK = threading.RLock()
P = ParamSpec("P")
R = TypeVar("R")


def drawing(function: Callable[P, R]) -> Callable[P, R]:
    """Run `function` holding DRAW_LOCK."""

    @functools.wraps(function)
    def locked(*args: P.args, **kwargs: P.kwargs) -> R:
        with DRAW_LOCK:
            return function(*args, **kwargs)

    return locked


TITLE_SIZE = 9
SUPTITLE_SIZE = 12
NOTE_SIZE = 8


@dataclass
class Panel:
    """One cell of a figure: an RGB picture, a title, and an optional colorbar: [0, 1], or
    signed (−, 0, + with zero at the colormap's centre)."""

    title: str
    rgb: np.ndarray
    colorbar: str | None = None
    signed_bar: bool = False


Grid = list[list[Panel | None]]  # None: an empty cell

# Sizes in inches. Panels are placed by hand (no layout engine): every image gets the same size
# whether or not it has a colorbar, titles get the room their line count needs, and nothing moves
# with the font metrics of the machine.
MARGIN = 0.15
COLUMN_GAP = 0.15
BAR_GAP, BAR_WIDTH, BAR_ROOM = 0.06, 0.1, 0.5
SHARED_BAR_ROOM = 0.75
SUPTITLE_ROOM = 0.45
ROW_GAP = 0.12


def image_panel(image: torch.Tensor, title: str) -> Panel:
    """The input image as a panel."""
    return Panel(title, image_array(image))


def _blank_panel(image: torch.Tensor, title: str) -> Panel:
    """A map with nothing to show: the image, faded towards white so it is not taken for a map."""
    return Panel(f"{title}\n(blank map)", 0.5 + 0.5 * image_array(image))


def cam_panel(image: torch.Tensor, cam: torch.Tensor, title: str, cmap: str, alpha: float) -> Panel:
    """A CAM drawn as the tutorial did: ReLU, min-max, colormap over the image."""
    shown = relu(cpu_copy(cam))[None]
    if bool(is_blank(shown)[0]):
        return _blank_panel(image, title)
    return Panel(title, np.asarray(overlay(image, shown[0], alpha, cmap)) / 255.0, cmap)


def pixel_panel(
    image: torch.Tensor,
    pixel_map: torch.Tensor,
    mode: str,
    title: str,
    sign: Sign = "magnitude",
) -> Panel:
    """One display mode of a pixel map (see `pictures.pixel_display`); gray and signed get a
    colorbar."""
    shown = pixel_display(pixel_map_batch(pixel_map), mode, sign)
    if bool(is_blank(shown)[0]):
        return _blank_panel(image, title)
    rgb = shown[0].permute(1, 2, 0).numpy()
    if mode == "signed":
        return Panel(title, rgb, DIVERGING, signed_bar=True)
    return Panel(title, rgb, "gray" if mode == "gray" else None)


def _fit_title(title: str, width: float, fontsize: float) -> str:
    """Wrap each line of a title to the panel's width (about 0.6 em per character)."""
    chars = max(8, int(width * 72 / (0.6 * fontsize)))
    lines = [
        part
        for line in title.split("\n")
        for part in (textwrap.wrap(line, chars, break_on_hyphens=False) or [""])
    ]
    return "\n".join(lines)


def _title_room(row: list[Panel | None], fontsize: float) -> float:
    """Inches above a row of panels for its tallest title."""
    lines = max((p.title.count("\n") + 1 for p in row if p is not None), default=1)
    return lines * 1.25 * fontsize / 72 + 0.12


Rect = tuple[float, float, float, float]  # (left, bottom, width, height)


def _inches(fig: Figure, x: float, y: float, w: float, h: float) -> Rect:
    """A rectangle in inches from the figure's bottom-left as figure fractions."""
    width, height = fig.get_size_inches()
    return (x / width, y / height, w / width, h / height)


def _colorbar(fig: Figure, rect: Rect, cmap: str, fontsize: float, signed: bool = False) -> None:
    """A colorbar in `rect` (figure fractions): [0, 1], or signed (−, 0, +)."""
    low = -1.0 if signed else 0.0
    mappable = ScalarMappable(Normalize(low, 1.0), colormap(cmap))
    bar = fig.colorbar(mappable, cax=fig.add_axes(rect), ticks=[low, (low + 1) / 2, 1])
    if signed:
        bar.ax.set_yticklabels(["−", "0", "+"])
    bar.ax.tick_params(labelsize=fontsize)


@drawing
def grid_figure(
    grid: Grid,
    side: float,
    fontsize: float,
    suptitle: str,
    shared_bar: str | None = None,
    notes: Sequence[str] = (),
) -> Figure:
    """A figure of square panels, `side` inches each, drawn row by row.

    A panel with a colorbar gets it at its right, in a strip every column reserves; with
    `shared_bar`, one colorbar for all panels sits at the far right instead. `notes` are
    lines under the panels (what the user should know about the maps).
    """
    panels = [p for row in grid for p in row if p is not None]
    for p in panels:
        p.title = _fit_title(p.title, side, fontsize)
    per_panel = shared_bar is None and any(p.colorbar for p in panels)
    cell = side + (BAR_ROOM if per_panel else COLUMN_GAP)
    width = 2 * MARGIN + max(map(len, grid)) * cell + (SHARED_BAR_ROOM if shared_bar else 0.0)
    suptitle = _fit_title(suptitle, width - 2 * MARGIN, SUPTITLE_SIZE)
    head = SUPTITLE_ROOM + suptitle.count("\n") * 1.25 * SUPTITLE_SIZE / 72
    heights = [side + _title_room(row, fontsize) + ROW_GAP for row in grid]
    footer = "\n".join(_fit_title(f"note: {n}", width - 2 * MARGIN, NOTE_SIZE) for n in notes)
    foot = (footer.count("\n") + 1) * 1.25 * NOTE_SIZE / 72 + 0.05 if notes else 0.0
    height = head + sum(heights) + MARGIN + foot
    fig = Figure(figsize=(width, height), facecolor="white")
    FigureCanvasAgg(fig)
    if notes:
        x, y = MARGIN / width, (MARGIN / 2) / height
        fig.text(x, y, footer, fontsize=NOTE_SIZE, ha="left", va="bottom", color="#444444")
    top = height - head
    for row, row_height in zip(grid, heights, strict=True):
        top -= row_height
        for c, panel in enumerate(row):
            if panel is not None:
                _draw_panel(fig, panel, MARGIN + c * cell, top, side, fontsize, per_panel)
    if shared_bar:
        grid_height = height - head - MARGIN - foot
        bar_height = min(grid_height, max(side, 0.5 * grid_height))
        bottom = MARGIN + foot + (grid_height - bar_height) / 2
        rect = _inches(fig, width - SHARED_BAR_ROOM + 0.1, bottom, BAR_WIDTH + 0.05, bar_height)
        _colorbar(fig, rect, shared_bar, fontsize - 1)
    fig.suptitle(suptitle, y=1 - 0.15 / height, va="top", fontsize=SUPTITLE_SIZE)
    return fig


def _draw_panel(
    fig: Figure, panel: Panel, x: float, y: float, side: float, fontsize: float, bar: bool
) -> None:
    """One panel with its lower-left corner at (x, y) inches, and its colorbar if `bar`."""
    ax = fig.add_axes(_inches(fig, x, y, side, side))
    ax.imshow(panel.rgb, interpolation="nearest")
    ax.set_title(panel.title, fontsize=fontsize)
    ax.set_axis_off()
    if bar and panel.colorbar:
        rect = _inches(fig, x + side + BAR_GAP, y, BAR_WIDTH, side)
        _colorbar(fig, rect, panel.colorbar, fontsize - 2, panel.signed_bar)


def wrap(panels: list[Panel], ncols: int) -> Grid:
    """Flow panels into rows of at most `ncols`."""
    return [list(panels[i : i + ncols]) for i in range(0, len(panels), ncols)]


def side_by_side(column: list[Panel], rows: Sequence[Sequence[Panel | None]]) -> Grid:
    """`column` down the left of `rows`; what it has beyond their number flows in extra rows.

    [input | gb all, pos, neg, gray]
    [grad-cam | ggc all, pos, neg, gray]
    """
    grid: Grid = [[column[r] if r < len(column) else None, *row] for r, row in enumerate(rows)]
    return grid + wrap(column[len(rows) :], 1 + max(len(row) for row in rows))
