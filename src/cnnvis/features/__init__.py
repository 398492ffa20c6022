"""Feature visualization: what a unit of the network responds to.

The other half of understanding a CNN: saliency maps say where a model looks in *an* image;
feature visualization says what a class logit, a channel or a neuron is looking *for*:

    from cnnvis import load_model
    from cnnvis.features import visualize, channel_grid, top_patches, make_grid

    model = load_model()
    goldfish = visualize(model, "goldfish")              # (3, 224, 224) in [0, 1]
    unit = visualize(model, "blocks.3:5", seed=1)         # channel 5 of blocks.3, mean
    grid = channel_grid(model, "blocks.3", n=16)          # .images (16, 3, 224, 224)
    best = top_patches(model, "blocks.3", 5, "photos/", k=9)   # .patches (9, 3, P, P)

- `optimize`: activation maximization (Erhan et al. 2009; Olah et al. 2017) with
- `param`: a Fourier-space, 1/f-scaled, colour-decorrelated image, and
- `transform`: random jitter, zoom and rotation at every step;
- `patches`: the dataset patches that excite a channel most (Zeiler & Fergus 2014), mapped
  back through the layer's measured receptive field;
- `grid`: pictures side by side.
"""

from .grid import grid_figure, make_grid, save_image
from .objective import FeatureError, parse_feature_target
from .optimize import (
    DEFAULT_STEPS,
    FeatureVisualization,
    channel_grid,
    maximize,
    measure,
    visualize,
)
from .param import ImageParam
from .patches import ReceptiveField, TopPatches, image_files, receptive_field, top_patches
from .transform import Robustness

__all__ = [
    "DEFAULT_STEPS",
    "FeatureError",
    "FeatureVisualization",
    "ImageParam",
    "ReceptiveField",
    "Robustness",
    "TopPatches",
    "channel_grid",
    "grid_figure",
    "image_files",
    "make_grid",
    "maximize",
    "measure",
    "parse_feature_target",
    "receptive_field",
    "save_image",
    "top_patches",
    "visualize",
]
