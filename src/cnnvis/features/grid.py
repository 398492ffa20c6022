"""Pictures side by side: a plain tensor grid, and a titled figure (drawn by `cnnvis.render`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from .. import render
from ..errors import ImageError
from ..render import panels as layout


def make_grid(
    images: torch.Tensor, ncols: int | None = None, pad: int = 2, fill: float = 1.0
) -> torch.Tensor:
    """Images (N, 3, H, W) as one image (3, rows*(H+pad)-pad, cols*(W+pad)-pad), row by row,
    `fill` between and after them; `ncols` defaults to ceil(sqrt(N))."""
    if images.dim() != 4 or len(images) == 0:
        raise ImageError(f"make_grid needs images (N, 3, H, W), got {tuple(images.shape)}")
    n, c, h, w = images.shape
    cols = ncols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = images.new_full((c, rows * (h + pad) - pad, cols * (w + pad) - pad), fill)
    for i, image in enumerate(images):
        top, left = (i // cols) * (h + pad), (i % cols) * (w + pad)
        grid[:, top : top + h, left : left + w] = image
    return grid


def save_image(image: torch.Tensor, path: str | Path) -> Path:
    """A [0, 1] image (3, H, W) as a PNG at its own resolution (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    render.to_pil(image).save(path, format="PNG")
    return path


def grid_figure(
    images: torch.Tensor,
    titles: Sequence[str],
    suptitle: str,
    *,
    ncols: int | None = None,
    panel_size: float = 1.6,
):
    """A matplotlib figure of the images with a title each (see `render.save_figure`)."""
    panels = [layout.image_panel(image, title) for image, title in zip(images, titles, strict=True)]
    cols = ncols or min(8, math.ceil(math.sqrt(len(panels))))
    grid = layout.wrap(panels, cols)
    return layout.grid_figure(grid, panel_size, layout.TITLE_SIZE - 1, suptitle)
