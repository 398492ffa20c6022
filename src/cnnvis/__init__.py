"""cnnvis: see what an image classifier looks at, on any architecture.

import cnnvis
model = cnnvis.load_model()                      # offline EfficientNet-Lite0, ImageNet
image = cnnvis.load_image("sample:cat")
cnnvis.classify(model, image)                    # [Prediction(285, 'Egyptian cat', 0.38), ...]
e = cnnvis.explain(model, image, method="grad-cam")
e.map                                            # raw, signed torch.Tensor
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    CnnvisError,
    ImageError,
    LayerError,
    MethodError,
    ModelError,
    OutputError,
    ParamError,
    TargetError,
)

if TYPE_CHECKING:
    from . import evaluate
    from .api import classify, explain, explain_many, sweep
    from .explanation import Explanation, Prediction, Sweep
    from .fusion import fuse_layers
    from .images import load_image
    from .layers import LayerInfo, default_layer, list_layers
    from .methods import MethodInfo, get_method, list_methods
    from .model import LoadedModel, Preprocess
    from .zoo import load_model

__version__ = "0.1.0"

# The public names that need torch, imported on first use (PEP 562), so that `import cnnvis`
# (and `cnnvis --help`, `cnnvis methods`) start without loading torch.
_LAZY = {
    "classify": ".api",
    "explain": ".api",
    "explain_many": ".api",
    "sweep": ".api",
    "Explanation": ".explanation",
    "Prediction": ".explanation",
    "Sweep": ".explanation",
    "fuse_layers": ".fusion",
    "load_image": ".images",
    "LayerInfo": ".layers",
    "default_layer": ".layers",
    "list_layers": ".layers",
    "MethodInfo": ".methods",
    "get_method": ".methods",
    "list_methods": ".methods",
    "LoadedModel": ".model",
    "Preprocess": ".model",
    "load_model": ".zoo",
}
_SUBMODULES = ("batch", "evaluate")  # `cnnvis.evaluate(...)`, `cnnvis.batch.run(...)`


def __getattr__(name: str) -> Any:
    """The torch-backed public names and the sub-modules (`cnnvis.evaluate`, `cnnvis.zoo`,
    `cnnvis.features`, ...), on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # looked up once
        return value
    if not name.startswith("_"):
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":  # the module exists; something it needs not
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})


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
    "ParamError",
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
