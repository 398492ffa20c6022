"""`detect`: a detector's findings on model input, one forward without gradients."""

from __future__ import annotations

import torch
from torch import nn

from ..forwards import guarded_forward
from ..model import LoadedModel, as_loaded, compute_model
from .outputs import Detections, read_detections


def detect(model: nn.Module | LoadedModel, x: torch.Tensor) -> list[Detections]:
    """The detections of each image of `x` (N, C, H, W), as the model takes it; detached."""
    module = compute_model(as_loaded(model).module)
    with guarded_forward(module, grad=False, like=x):
        found = read_detections(module(x))
    return [d.detach() for d in found]
