"""cnnvis: see what an image classifier looks at, on any architecture.

import cnnvis
model = cnnvis.load_model()                      # offline EfficientNet-Lite0, ImageNet
image = cnnvis.load_image("sample:cat")
cnnvis.classify(model, image)                    # [Prediction(285, 'Egyptian cat', 0.38), ...]
e = cnnvis.explain(model, image, method="grad-cam")
e.map                                            # raw, signed torch.Tensor
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import evaluate
from .api import classify, explain, explain_many, sweep
from .errors import (
    CnnvisError,
    ImageError,
    LayerError,
    MethodError,
    ModelError,
    OutputError,
    TargetError,
)
from .explanation import Explanation, Prediction, Sweep
from .fusion import fuse_layers
from .images import load_image
from .layers import LayerInfo, default_layer, list_layers
from .methods import MethodInfo, get_method, list_methods
from .model import LoadedModel, Preprocess
from .zoo import load_model

if TYPE_CHECKING:
    from types import ModuleType

__version__ = "0.1.0"


def __getattr__(name: str) -> ModuleType:
    """`cnnvis.batch` (whole datasets) is imported on first use."""
    if name == "batch":
        import importlib

        return importlib.import_module(".batch", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CnnvisError",
    "Explanation",
    "ImageError",
    "LayerError",
    "LayerInfo",
    "LoadedModel",
    "MethodError",
    "MethodInfo",
    "ModelError",
    "OutputError",
    "Prediction",
    "Preprocess",
    "Sweep",
    "TargetError",
    "__version__",
    "classify",
    "default_layer",
    "evaluate",
    "explain",
    "explain_many",
    "fuse_layers",
    "get_method",
    "list_layers",
    "list_methods",
    "load_image",
    "load_model",
    "sweep",
]
