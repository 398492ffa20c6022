"""Results as the page draws them and as files to download, all made in memory.

The page colours the maps itself (so the colormap and the opacity change without a round
trip): each map is sent as 8-bit display values in a grayscale PNG, with the colormaps as
256-colour tables. The downloads are the same figure, raw maps and manifest the CLI writes.
"""

from __future__ import annotations

import base64
import io
import threading
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from PIL import Image

from .. import render
from ..explanation import Explanation, Prediction
from ..files import write_npz
from ..manifest import dumps, map_key, served_manifest
from ..postprocess import abs_max_grayscale, is_blank, relu
from ..render import display
from .state import Result

COLORMAPS = ("jet", "turbo", "viridis", "inferno", "magma", "plasma", "hot", "gray")
DEFAULT_COLORMAP = "jet"
SIGNED_COLORMAP = "RdBu_r"  # signed maps: red raised the score, blue lowered it, white zero
CAM_DISPLAY = "ReLU, then min-max to 0-255"
PIXEL_DISPLAY = "|R|+|G|+|B|, scaled to its 99th percentile, to 0-255"
SIGNED_DISPLAY = (
    "R+G+B summed, scaled to its 99th percentile of |map|, to 0-255 with zero at 128 "
    f"(drawn in {SIGNED_COLORMAP}: red raised the score, blue lowered it)"
)
RELATIVE_DISPLAY = (
    "R+G+B summed minus its mean over the image (RISE's expected score), scaled to its 99th "
    f"percentile of |map|, to 0-255 with the mean at 128 (drawn in {SIGNED_COLORMAP})"
)

_FIGURE_LOCK = threading.Lock()  # matplotlib is not thread-safe enough to draw in parallel


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=3)
    return buffer.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def picture(image: torch.Tensor) -> str:
    """A [0, 1] image tensor (3, H, W) as a PNG data URL."""
    return data_url(png_bytes(render.to_pil(image)))


def display_values(e: Explanation, index: int = 0) -> tuple[str, bool, bool]:
    """One map as (grayscale PNG data URL of its display values, blank?, signed?), drawn by
    the display rule of its method (`render.display`, as the CLI's figures):

    CAMs: ReLU, then min-max (the tutorial's overlay); a map whose sign means for / against
    the class (occlusion, integrated gradients, ...; RISE relative to its mean): 0.5 + 0.5 x
    the map clipped at its 99th percentile of |map|, zero at 128, for a diverging colormap;
    the gradient family: the tutorial's grayscale |map|.
    """
    m = e.map[index].detach().float().cpu()
    if e.kind == "cam":
        shown = relu(m[None])
        blank = bool(is_blank(shown)[0])
        image = render.heatmap(shown[0], cmap="gray")
        return data_url(png_bytes(image.convert("L"))), blank, False
    if display.main_mode(e) == "signed":
        signed = display.signed_2d(m[None], display.method_sign(e))
        blank = bool(is_blank(signed.abs())[0])
        values = display.signed_values(signed)[0].nan_to_num(0.5)
        gray = (values * 255).round().clamp(0, 255).to(torch.uint8).numpy()
        return data_url(png_bytes(Image.fromarray(gray, "L"))), blank, True
    blank = bool(is_blank(abs_max_grayscale(m[None]))[0])
    image = render.pixel_map_image(m, "gray")
    return data_url(png_bytes(image.convert("L"))), blank, False


def display_note(e: Explanation) -> str:
    """How the display values of a map were made, in words for the page."""
    if e.kind == "cam":
        return CAM_DISPLAY
    if display.main_mode(e) != "signed":
        return PIXEL_DISPLAY
    return RELATIVE_DISPLAY if display.method_sign(e) == "mean-relative" else SIGNED_DISPLAY


def colormap_tables(names: tuple[str, ...] = COLORMAPS) -> dict[str, str]:
    """Each offered colormap as 256 colours in one hex string (rrggbb...)."""
    ramp = np.linspace(0.0, 1.0, 256)
    tables = {}
    for name in names:
        rgb = np.round(render.colormap(name)(ramp)[:, :3] * 255).astype(np.uint8)
        tables[name] = rgb.tobytes().hex()
    return tables


def predictions(items: list[Prediction] | None) -> list[dict[str, Any]]:
    return [asdict(p) for p in items or []]


def title(e: Explanation) -> str:
    return e.method if e.layer is None else f"{e.method} @ {e.layer}"


# downloads


def figure_png(result: Result, cmap: str, alpha: float) -> bytes:
    """The explain figure (the tutorial's panel) or the sweep grid, as PNG bytes."""
    with _FIGURE_LOCK:
        if result.sweep is not None:
            fig = render.sweep_figure(result.sweep, 0, cmap, alpha=alpha)
        else:
            fig = render.explanation_figure(result.explanations, 0, cmap, alpha=alpha)
        png = render.figure_png(fig, dpi=100)
        fig.clear()
    return png


def maps_npz(result: Result) -> bytes:
    """The raw, signed maps (float32) and the input picture, as a compressed NPZ."""
    arrays: dict[str, Any]
    if result.sweep is not None:
        arrays = {layer: _array(e.map[0]) for layer, e in result.sweep.explanations.items()}
    else:
        arrays = {map_key(e): _array(e.map[0]) for e in result.explanations}
    arrays["image"] = _array(result.explanations[0].images[0])
    buffer = io.BytesIO()
    write_npz(buffer, arrays)
    return buffer.getvalue()


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def manifest_json(result: Result) -> bytes:
    """What was run on what, and the result: the fields of the CLI's manifest.json."""
    manifest = served_manifest(
        result.kind, result.id, result.facts, result.explanations, result.sweep
    )
    return dumps(manifest).encode()
