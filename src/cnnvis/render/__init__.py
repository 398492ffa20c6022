"""Drawing: the one place where tensors become NumPy arrays, PIL images and matplotlib figures.

Images are RGB everywhere. Figures are `matplotlib.figure.Figure` objects on an Agg canvas,
never pyplot, so drawing is headless, thread-safe and leaves no global state behind. Maps are
made displayable by `cnnvis.postprocess` (zero-safe: a blank map is drawn as the faded image
with "blank map" in its title, never as NaN).

Import what you draw from here. The rooms: `display` (the rule each method's map is drawn by:
percentile clipping, signed maps centred at zero, RISE minus its mean), `pictures` (colormaps,
arrays, PIL images of one map), `panels` (the hand-placed grid of panels every figure is built
on, and the drawing lock) and `figures` (the explanation figure, the comparison, the sweep
grid, PNG files).
"""

from __future__ import annotations

from .detections import detections_figure
from .figures import comparison_figure, explanation_figure, figure_png, save_figure, sweep_figure
from .pictures import (
    CAM_MODES,
    PIXEL_MODES,
    colormap,
    heatmap,
    map_image,
    overlay,
    pixel_map_image,
    save_map_png,
    to_pil,
)

__all__ = [
    "CAM_MODES",
    "PIXEL_MODES",
    "colormap",
    "comparison_figure",
    "detections_figure",
    "explanation_figure",
    "figure_png",
    "heatmap",
    "map_image",
    "overlay",
    "pixel_map_image",
    "save_figure",
    "save_map_png",
    "sweep_figure",
    "to_pil",
]
