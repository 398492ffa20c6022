"""The concept figure: each image coloured by concept, with a legend of what each votes for."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..render.pictures import colormap

if TYPE_CHECKING:
    from .result import ConceptResult

MAX_IMAGES = 8
COLUMNS = 4
IMAGE_WEIGHT = 0.45


def concept_colors(k: int) -> torch.Tensor:
    """(k, 3) RGB colours in [0, 1], far apart for small k."""
    name = "tab10" if k <= 10 else "gist_rainbow"
    cmap = colormap(name)
    steps = [j / 10 + 0.05 for j in range(k)] if k <= 10 else [j / k for j in range(k)]
    return torch.tensor([cmap(s)[:3] for s in steps], dtype=torch.float32)


def coloured(result: ConceptResult) -> torch.Tensor:
    """(N, 3, H, W) images in [0, 1]: at each pixel the colour of its strongest concept, as
    bright as the square root of that concept's strength there (relative to its maximum over
    all images), blended with the picture."""
    maps = result.maps.detach().float().cpu().clamp(min=0)
    peak = maps.amax(dim=(0, 2, 3), keepdim=True).clamp_min(1e-12)
    strength = maps / peak
    best, which = strength.max(dim=1)  # (N, H, W)
    colors = concept_colors(result.k)[which].permute(0, 3, 1, 2)  # (N, 3, H, W)
    overlay = colors * best[:, None].sqrt()  # sqrt: a concept at a quarter strength still shows
    pictures = result.pictures.float().cpu()
    return (IMAGE_WEIGHT * pictures + (1 - IMAGE_WEIGHT) * overlay).clamp(0, 1)


def concept_figure(result: ConceptResult, top: int = 2) -> Figure:
    """The first MAX_IMAGES images coloured by concept, in rows of COLUMNS (one image: the
    picture beside it), and the legend below."""
    panels = list(coloured(result)[:MAX_IMAGES])
    titles = [f"image {i}" for i in range(len(panels))] if len(panels) > 1 else ["concepts"]
    if len(panels) == 1:
        panels.insert(0, result.pictures[0].float().cpu())
        titles.insert(0, "image")
    columns = min(len(panels), COLUMNS)
    rows = -(-len(panels) // columns)
    side, title_room, legend_room = 3.0, 0.5, 0.28 * result.k + 0.3
    width, height = side * columns, (side + 0.25) * rows + title_room + legend_room
    fig = Figure(figsize=(width, height))
    title = f"Deep Feature Factorization at {result.layer} ({result.model_name}"
    fig.suptitle(title + (", random weights)" if result.random_weights else ")"), fontsize=11)
    for index, (image, label) in enumerate(zip(panels, titles, strict=True)):
        row, column = divmod(index, columns)
        bottom = height - title_room - (row + 1) * (side + 0.25)
        ax = fig.add_axes(
            (column * side / width + 0.01, bottom / height, side / width - 0.02, side / height)
        )
        ax.imshow(image.permute(1, 2, 0).numpy())
        ax.set_title(label, fontsize=8)
        ax.set_axis_off()
    colors = concept_colors(result.k)
    handles = [
        Patch(color=tuple(colors[j].tolist()), label=result.label(j, top)) for j in range(result.k)
    ]
    fig.legend(handles=handles, loc="lower center", fontsize=9, frameon=False, ncol=1)
    return fig
