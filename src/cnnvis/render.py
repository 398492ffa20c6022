"""Drawing: the one place where tensors become NumPy arrays, PIL images and matplotlib figures.

Images are RGB everywhere. Figures are `matplotlib.figure.Figure` objects on an Agg canvas,
never pyplot, so drawing is headless, thread-safe and leaves no global state behind. Maps are
made displayable by `cnnvis.postprocess` (zero-safe: a blank map is drawn as the faded image
with "blank map" in its title, never as NaN).
"""

from __future__ import annotations

import functools
import io
import math
import textwrap
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from PIL import Image

from cnnvis import errors
from cnnvis.explanation import Explanation, Sweep
from cnnvis.postprocess import (
    RESCALE_MODES,
    DisplayError,
    abs_max_grayscale,
    is_blank,
    normalize,
    relu,
    rescale,
    symmetric,
    upsample,
)

# matplotlib's text layout and font objects are shared by every figure of a process and are not
# safe to use from two threads at once (seen: two threads building and drawing the same figure
# gave different PNGs): building figures and drawing them to PNG are serialized by this lock.
DRAW_LOCK = threading.RLock()


def _drawing(function):
    """Run `function` holding DRAW_LOCK."""

    @functools.wraps(function)
    def locked(*args, **kwargs):
        with DRAW_LOCK:
            return function(*args, **kwargs)

    return locked


PIXEL_MODES: tuple[str, ...] = (*RESCALE_MODES, "gray")
CAM_MODES: tuple[str, ...] = ("overlay", "heatmap", "signed")
DIVERGING_CMAP = "RdBu_r"
TITLE_SIZE = 9
SUPTITLE_SIZE = 12


# colormaps and arrays


def colormap(name: str) -> Colormap:
    """The matplotlib colormap called `name`; DisplayError listing close names if none is."""
    if not isinstance(name, str) or name not in matplotlib.colormaps:
        raise DisplayError(errors.unknown("colormap", str(name), sorted(matplotlib.colormaps)))
    return matplotlib.colormaps[name]


def _cpu(tensor: torch.Tensor) -> torch.Tensor:
    """A detached float32 CPU copy (a map with NaN/inf is later drawn as blank)."""
    return tensor.detach().to("cpu", torch.float32)


def _image_array(image: torch.Tensor) -> np.ndarray:
    """A [0, 1] image tensor (3, H, W), (1, H, W) or (1, 3, H, W) as float32 (H, W, 3)."""
    if not isinstance(image, torch.Tensor):
        raise DisplayError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise DisplayError(f"image must be (3, H, W) in [0, 1], got {tuple(image.shape)}")
    array = torch.nan_to_num(_cpu(image)).clamp(0.0, 1.0).expand(3, -1, -1)
    return array.permute(1, 2, 0).numpy()


def _map2d(map2d: torch.Tensor) -> torch.Tensor:
    """A single map (H, W) or (1, H, W) as a float32 CPU tensor (H, W)."""
    if not isinstance(map2d, torch.Tensor):
        raise DisplayError(f"map must be a torch.Tensor, got {type(map2d).__name__}")
    if map2d.dim() == 3 and map2d.shape[0] == 1:
        map2d = map2d[0]
    if map2d.dim() != 2:
        raise DisplayError(f"map must be one 2-d map (H, W), got {tuple(map2d.shape)}")
    return _cpu(map2d)


def _map3d(map3d: torch.Tensor) -> torch.Tensor:
    """A single pixel map (3, H, W) or (1, 3, H, W) as a float32 CPU batch (1, 3, H, W)."""
    if not isinstance(map3d, torch.Tensor):
        raise DisplayError(f"map must be a torch.Tensor, got {type(map3d).__name__}")
    if map3d.dim() == 3:
        map3d = map3d[None]
    if map3d.dim() != 4 or map3d.shape[:2] != (1, 3):
        raise DisplayError(f"pixel map must be (3, H, W), got {tuple(map3d.shape)}")
    return _cpu(map3d)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8 RGB: round(255 * clip(x, 0, 1)), NaN as 0."""
    return np.round(np.clip(np.nan_to_num(array), 0.0, 1.0) * 255.0).astype(np.uint8)


def _colorize(values: np.ndarray, cmap: str) -> np.ndarray:
    """[0, 1] values (H, W) through a colormap to float RGB (H, W, 3), alpha dropped."""
    return colormap(cmap)(values)[..., :3]


def _display_values(map2d: torch.Tensor, signed: bool) -> np.ndarray:
    """Colormap inputs in [0, 1]: min-max if unsigned, 0.5 + map / (2 max|map|) if signed."""
    m = _map2d(map2d)[None]
    values = 0.5 + 0.5 * symmetric(m) if signed else normalize(m)
    return values[0].numpy()


# PIL images


def to_pil(image_tensor: torch.Tensor) -> Image.Image:
    """A [0, 1] image tensor (3, H, W) as an RGB PIL image: round(255 * clip(x, 0, 1))."""
    return Image.fromarray(_to_uint8(_image_array(image_tensor)))


def heatmap(map2d: torch.Tensor, cmap: str | None = None, signed: bool = False) -> Image.Image:
    """One map (H, W) through a colormap, as an RGB PIL image.

    unsigned: cmap((m - min) / (max - min)), default "jet"; signed: a diverging cmap centred on
    zero, cmap(0.5 + m / (2 max|m|)), default "RdBu_r". A constant map is drawn as cmap(0)
    unsigned and as the centre colour cmap(0.5) signed.
    """
    name = cmap or (DIVERGING_CMAP if signed else "jet")
    rgb = _colorize(_display_values(map2d, signed), name)
    return Image.fromarray(_to_uint8(rgb))


def overlay(
    image: torch.Tensor,
    map2d: torch.Tensor,
    alpha: float = 0.5,
    cmap: str = "jet",
    signed: bool = False,
) -> Image.Image:
    """A heatmap blended over the image, at the image's size, as an RGB PIL image.

    out = (1 - alpha) * image + alpha * heatmap(map); a map of another size is first resized
    bilinearly (align_corners=False) to the image.
    """
    if not 0.0 <= alpha <= 1.0:
        raise DisplayError(f"alpha must be in [0, 1], got {alpha}")
    picture = _image_array(image)
    m = _map2d(map2d)
    if tuple(m.shape) != picture.shape[:2]:
        m = upsample(m[None], picture.shape[:2])[0]
    heat = _colorize(_display_values(m, signed), cmap)
    return Image.fromarray(_to_uint8((1.0 - alpha) * picture + alpha * heat))


def pixel_map_image(map3d: torch.Tensor, mode: str = "all") -> Image.Image:
    """A pixel-space map (3, H, W) as the tutorial showed it, as an RGB PIL image.

    "all" / "pos" / "neg": `postprocess.rescale` in colour (channels as R, G, B);
    "gray": `postprocess.abs_max_grayscale`, the tutorial's grayscale, in all three channels.
    """
    return to_pil(_pixel_display(_map3d(map3d), mode)[0])


def _pixel_display(batch: torch.Tensor, mode: str) -> torch.Tensor:
    """Display version (N, 3, H, W) in [0, 1] of pixel maps (N, 3, H, W) for one mode."""
    if mode == "gray":
        return abs_max_grayscale(batch)[:, None].expand(-1, 3, -1, -1)
    if mode in RESCALE_MODES:
        return rescale(batch, mode)
    raise DisplayError(errors.unknown("pixel display mode", str(mode), PIXEL_MODES))


# figure panels and layout


@dataclass
class _Panel:
    """One cell of a figure: an RGB picture, a title, and an optional [0, 1] colorbar."""

    title: str
    rgb: np.ndarray
    colorbar: str | None = None


Grid = list[list[_Panel | None]]  # None: an empty cell

# Sizes in inches. Panels are placed by hand (no layout engine): every image gets the same size
# whether or not it has a colorbar, titles get the room their line count needs, and nothing moves
# with the font metrics of the machine.
MARGIN = 0.15
COLUMN_GAP = 0.15
BAR_GAP, BAR_WIDTH, BAR_ROOM = 0.06, 0.1, 0.5
SHARED_BAR_ROOM = 0.75
SUPTITLE_ROOM = 0.45
ROW_GAP = 0.12


def _image_panel(image: torch.Tensor, title: str) -> _Panel:
    return _Panel(title, _image_array(image))


def _blank_panel(image: torch.Tensor, title: str) -> _Panel:
    """A map with nothing to show: the image, faded towards white so it is not taken for a map."""
    return _Panel(f"{title}\n(blank map)", 0.5 + 0.5 * _image_array(image))


def _cam_panel(
    image: torch.Tensor, cam: torch.Tensor, title: str, cmap: str, alpha: float
) -> _Panel:
    """A CAM drawn as the tutorial did: ReLU, min-max, colormap over the image."""
    shown = relu(_cpu(cam))[None]
    if bool(is_blank(shown)[0]):
        return _blank_panel(image, title)
    return _Panel(title, np.asarray(overlay(image, shown[0], alpha, cmap)) / 255.0, cmap)


def _pixel_panel(image: torch.Tensor, pixel_map: torch.Tensor, mode: str, title: str) -> _Panel:
    """One display mode of a pixel map; gray gets a colorbar."""
    shown = _pixel_display(_map3d(pixel_map), mode)
    if bool(is_blank(shown)[0]):
        return _blank_panel(image, title)
    return _Panel(title, shown[0].permute(1, 2, 0).numpy(), "gray" if mode == "gray" else None)


def _fit_title(title: str, width: float, fontsize: float) -> str:
    """Wrap each line of a title to the panel's width (about 0.6 em per character)."""
    chars = max(8, int(width * 72 / (0.6 * fontsize)))
    lines = [
        part
        for line in title.split("\n")
        for part in (textwrap.wrap(line, chars, break_on_hyphens=False) or [""])
    ]
    return "\n".join(lines)


def _title_room(row: list[_Panel | None], fontsize: float) -> float:
    """Inches above a row of panels for its tallest title."""
    lines = max((p.title.count("\n") + 1 for p in row if p is not None), default=1)
    return lines * 1.25 * fontsize / 72 + 0.12


def _inches(fig: Figure, x: float, y: float, w: float, h: float) -> list[float]:
    """A rectangle in inches from the figure's bottom-left as figure fractions."""
    width, height = fig.get_size_inches()
    return [x / width, y / height, w / width, h / height]


def _colorbar(fig: Figure, rect: list[float], cmap: str, fontsize: float) -> None:
    """A [0, 1] colorbar in `rect` (figure fractions)."""
    mappable = ScalarMappable(Normalize(0.0, 1.0), colormap(cmap))
    bar = fig.colorbar(mappable, cax=fig.add_axes(rect), ticks=[0, 0.5, 1])
    bar.ax.tick_params(labelsize=fontsize)


@_drawing
def _grid_figure(
    grid: Grid,
    side: float,
    fontsize: float,
    suptitle: str,
    shared_bar: str | None = None,
) -> Figure:
    """A figure of square panels, `side` inches each, drawn row by row.

    A panel with a colorbar gets it at its right, in a strip every column reserves; with
    `shared_bar`, one colorbar for all panels sits at the far right instead.
    """
    panels = [p for row in grid for p in row if p is not None]
    for panel in panels:
        panel.title = _fit_title(panel.title, side, fontsize)
    per_panel = shared_bar is None and any(p.colorbar for p in panels)
    cell = side + (BAR_ROOM if per_panel else COLUMN_GAP)
    width = 2 * MARGIN + max(map(len, grid)) * cell + (SHARED_BAR_ROOM if shared_bar else 0.0)
    suptitle = _fit_title(suptitle, width - 2 * MARGIN, SUPTITLE_SIZE)
    head = SUPTITLE_ROOM + suptitle.count("\n") * 1.25 * SUPTITLE_SIZE / 72
    heights = [side + _title_room(row, fontsize) + ROW_GAP for row in grid]
    height = head + sum(heights) + MARGIN
    fig = Figure(figsize=(width, height), facecolor="white")
    FigureCanvasAgg(fig)
    top = height - head
    for row, row_height in zip(grid, heights, strict=True):
        top -= row_height
        for c, panel in enumerate(row):
            if panel is not None:
                _draw_panel(fig, panel, MARGIN + c * cell, top, side, fontsize, per_panel)
    if shared_bar:
        grid_height = height - head - MARGIN
        bar_height = min(grid_height, max(side, 0.5 * grid_height))
        bottom = MARGIN + (grid_height - bar_height) / 2
        rect = _inches(fig, width - SHARED_BAR_ROOM + 0.1, bottom, BAR_WIDTH + 0.05, bar_height)
        _colorbar(fig, rect, shared_bar, fontsize - 1)
    fig.suptitle(suptitle, y=1 - 0.15 / height, va="top", fontsize=SUPTITLE_SIZE)
    return fig


def _draw_panel(
    fig: Figure, panel: _Panel, x: float, y: float, side: float, fontsize: float, bar: bool
) -> None:
    """One panel with its lower-left corner at (x, y) inches, and its colorbar if `bar`."""
    ax = fig.add_axes(_inches(fig, x, y, side, side))
    ax.imshow(panel.rgb, interpolation="nearest")
    ax.set_title(panel.title, fontsize=fontsize)
    ax.set_axis_off()
    if bar and panel.colorbar:
        rect = _inches(fig, x + side + BAR_GAP, y, BAR_WIDTH, side)
        _colorbar(fig, rect, panel.colorbar, fontsize - 2)


def _wrap(panels: list[_Panel], ncols: int) -> Grid:
    """Flow panels into rows of at most `ncols`."""
    return [panels[i : i + ncols] for i in range(0, len(panels), ncols)]


def _side_by_side(column: list[_Panel], rows: Grid) -> Grid:
    """`column` down the left of `rows`; what it has beyond their number flows in extra rows.

    [input | gb all, pos, neg, gray]
    [grad-cam | ggc all, pos, neg, gray]
    """
    grid: Grid = [[column[r] if r < len(column) else None, *row] for r, row in enumerate(rows)]
    return grid + _wrap(column[len(rows) :], 1 + max(len(row) for row in rows))


# figures


def _check_index(explanation: Explanation, index: int) -> None:
    if not -len(explanation) <= index < len(explanation):
        raise DisplayError(
            f"index {index} is out of range for {explanation.method!r}, "
            f"which explains {len(explanation)} image(s)"
        )


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


def _target_label(explanation: Explanation, index: int) -> str:
    """'Egyptian cat (285), p = 0.63'."""
    name = explanation.target_names[index]
    if explanation.targets[index] < 0:  # a unit target such as layer4:17@sum
        return f"unit {name}"
    return f"{name} ({explanation.targets[index]}), p = {explanation.probabilities[index]:.2f}"


def _figure_title(first: Explanation, index: int, several_targets: bool = False) -> str:
    """The suptitle: the explained class and its probability (and the model, if named)."""
    model = "" if first.model in ("", "custom") else f"  ·  {first.model}"
    what = "several targets (see each panel)" if several_targets else _target_label(first, index)
    return f"explaining: {what}{model}"


@_drawing
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

    Pixel-space maps get a row each: colour all / pos / neg (`postprocess.rescale`) and the
    tutorial's grayscale (`postprocess.abs_max_grayscale`, with a colorbar). The input and the
    CAM-style maps over it (ReLU, min-max, `cmap`, with a colorbar) go down the left column,
    or, without pixel-space maps, flow in rows of `ncols`.
    """
    items = _as_list(explanations)
    colormap(cmap)
    for item in items:
        _check_index(item, index)
    image = items[0].images[index]
    several = len({(e.targets[index], e.target_names[index]) for e in items}) > 1

    def title(e: Explanation) -> str:
        return _method_title(e) + (f"\n→ {e.target_names[index]}" if several else "")

    head = [_image_panel(image, "input")]
    head += [
        _cam_panel(image, e.map[index], title(e), cmap, alpha) for e in items if e.kind == "cam"
    ]
    pixel_rows = [
        [_pixel_panel(image, e.map[index], m, f"{title(e)} ({m})") for m in PIXEL_MODES]
        for e in items
        if e.kind == "pixel"
    ]
    grid = _side_by_side(head, pixel_rows) if pixel_rows else _wrap(head, ncols)
    return _grid_figure(grid, panel_size, TITLE_SIZE, _figure_title(items[0], index, several))


def _shape_label(shape: Sequence[int]) -> str:
    """'512x14x14' for an output shape (1, 512, 14, 14): a 4-d shape loses its batch dimension."""
    dims = tuple(shape)[1:] if len(shape) == 4 else tuple(shape)
    return "x".join(str(d) for d in dims)


@_drawing
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
    _check_index(first, index)
    image = first.images[index]
    panels = [_image_panel(image, "input")]
    for layer, e in sweep.explanations.items():
        title = f"{layer}\n{_shape_label(sweep.shapes.get(layer, ()))}"
        if e.kind == "cam":
            panels.append(_cam_panel(image, e.map[index], title, cmap, alpha))
        else:
            panels.append(_pixel_panel(image, e.map[index], pixel_mode, title))
    grid = _wrap(panels, ncols or _sweep_columns(len(panels)))
    bar = cmap if first.kind == "cam" else ("gray" if pixel_mode == "gray" else None)
    suptitle = f"{sweep.method} per layer  ·  {_figure_title(first, index)}"
    fig = _grid_figure(grid, panel_size, TITLE_SIZE - 1, suptitle, shared_bar=bar)
    return fig


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


def map_image(
    explanation: Explanation, index: int = 0, cmap: str | None = None, mode: str | None = None
) -> Image.Image:
    """One map of an explanation as an RGB PIL image at the input's resolution.

    CAM-style maps: mode "overlay" (default; ReLU, then over the image) or "heatmap" (ReLU,
    min-max), both in `cmap` (default "jet"), or "signed" (the raw map in a diverging `cmap`
    centred on zero, default "RdBu_r"). Pixel-space maps: "all" (default), "pos", "neg" or
    "gray", as `pixel_map_image`.
    """
    _check_index(explanation, index)
    m, image = explanation.map[index], explanation.images[index]
    if explanation.kind == "pixel":
        return pixel_map_image(m, mode or "all")
    mode = mode or "overlay"
    if mode == "overlay":
        return overlay(image, relu(_cpu(m)), cmap=cmap or "jet")
    if mode == "heatmap":
        return heatmap(relu(_cpu(m)), cmap or "jet")
    if mode == "signed":
        return heatmap(m, cmap, signed=True)
    raise DisplayError(errors.unknown("CAM display mode", str(mode), CAM_MODES))


def save_map_png(
    explanation: Explanation,
    index: int,
    path: str | Path,
    cmap: str | None = None,
    mode: str | None = None,
) -> Path:
    """Write one map as a PNG at the input's resolution (see `map_image` for the modes)."""
    image = map_image(explanation, index, cmap, mode)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path


@_drawing
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

    Each method gets its main display: CAM-style maps over the image (ReLU, min-max, `cmap`),
    pixel-space maps as the tutorial's grayscale (`postprocess.abs_max_grayscale`), each with
    its colorbar. Up to five panels sit in one row; more flow into balanced rows.
    """
    items = _as_list(explanations)
    colormap(cmap)
    for item in items:
        _check_index(item, index)
    image = items[0].images[index]
    several = len({(e.targets[index], e.target_names[index]) for e in items}) > 1
    panels = [_image_panel(image, "input")]
    for e in items:
        title = _method_title(e) + (f"\n→ {e.target_names[index]}" if several else "")
        if e.kind == "cam":
            panels.append(_cam_panel(image, e.map[index], title, cmap, alpha))
        else:
            panels.append(_pixel_panel(image, e.map[index], "gray", f"{title} (gray)"))
    n = len(panels)
    columns = ncols or (n if n <= 5 else math.ceil(n / math.ceil(n / 5)))
    suptitle = f"methods compared  ·  {_figure_title(items[0], index, several)}"
    return _grid_figure(_wrap(panels, columns), panel_size, TITLE_SIZE, suptitle)
