"""What differs between torchvision's tasks when a model is built by name: builder arguments,
preprocessing, class names and how a state dict file is loaded.

- classification: as torchvision's weights say (`weights.transforms()`).
- detection (Faster/Mask/Keypoint R-CNN, RetinaNet, FCOS, SSD, SSDlite): the model takes a list
  of [0, 1] images and normalizes and resizes them itself (its `transform`), so cnnvis only
  scales to [0, 1] (mean 0, std 1) at the model's own size (`transform.min_size`), centre-cropped
  square like every cnnvis input. Its output is a list of dicts (boxes, scores, labels).
- segmentation (FCN, DeepLabV3, LRASPP): resized to the weights' size (520), ImageNet mean/std;
  the output is a dict whose "out" holds (N, K, H, W) logits.
- video (R3D, MC3, R(2+1)D, S3D, MViT, Swin3D): the weights' clip size and Kinetics mean/std.

Detection and segmentation models are built with `weights_backbone=None`: torchvision's default
would download ImageNet backbone weights even for `weights=None`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from ..model import Preprocess, Task
from .model_files import guess_num_classes, short
from .preprocessing import weights_preprocess


def build_kwargs(task: Task) -> dict[str, Any]:
    """Builder arguments a task needs for a build without any download."""
    return {"weights_backbone": None} if task in ("detection", "segmentation") else {}


def task_preprocess(task: Task, weights: Any, module: nn.Module | None) -> Preprocess:
    """A torchvision model's preprocessing for its task (see the module's docstring)."""
    if task == "detection":
        size = detector_size(module)
        return Preprocess(resize_size=size, crop_size=size, mean=(0.0,) * 3, std=(1.0,) * 3)
    if task == "segmentation" and weights is not None:
        size = int(_first(weights.transforms().resize_size))
        base = weights_preprocess(weights)
        return Preprocess(
            resize_size=size,
            crop_size=size,
            mean=base.mean,
            std=base.std,
            interpolation=base.interpolation,
        )
    return weights_preprocess(weights)


def detector_size(module: nn.Module | None) -> int:
    """The image size a torchvision detector works at (the last of its `transform.min_size`)."""
    sizes = getattr(getattr(module, "transform", None), "min_size", None)
    if not sizes:
        return 800
    return int(sizes[-1]) if isinstance(sizes, list | tuple) else int(sizes)


def task_categories(task: Task, weights: Any, module: nn.Module) -> list[str] | None:
    """Class names from the weights' meta, if the module predicts that many classes."""
    if weights is None:
        return None
    names = list(weights.meta.get("categories") or [])
    if not names:
        return None
    if task == "detection":  # built with the weights' classes (num_classes is never changed)
        return names
    outputs = guess_num_classes(module)
    return names if outputs is None or outputs == len(names) else None


def load_task_state(module: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Load a detection or segmentation state dict into a model built without downloads.

    Such a build has `BatchNorm2d` where a pretrained one has `FrozenBatchNorm2d`; the files of
    the latter lack `num_batches_tracked`, which BatchNorm fills in (same eval-mode values).
    """
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise ModelError(
            f"{path} does not fit this architecture (detection and segmentation models are "
            f"built with their default number of classes): {short(e)}"
        ) from e


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list | tuple) else value
