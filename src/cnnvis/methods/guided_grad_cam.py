"""Guided Grad-CAM: a composition of guided backprop and Grad-CAM, not a copy of either."""

from __future__ import annotations

import torch

from ..capture import Recording
from ..postprocess import upsample
from .cam import grad_cam
from .facts import Cost, MethodInfo, Needs
from .registry import register


def guided_grad_cam(rec: Recording, layer: str | None) -> torch.Tensor:
    """Guided backprop times the upsampled, ReLU'd Grad-CAM (Selvaraju et al. 2017)."""
    guided = rec.input_gradient("guided")
    heat = upsample(grad_cam(rec, layer).clamp(min=0), (guided.shape[-2], guided.shape[-1]))
    return guided * heat[:, None]


register(
    MethodInfo(
        name="guided-grad-cam",
        order=22,
        kind="pixel",
        summary="Guided backprop masked by the upsampled Grad-CAM: class-specific and sharp.",
        formula="GB ⊙ upsample(Grad-CAM)",
        paper="Selvaraju et al. 2017, arXiv:1610.02391",
        cost=Cost("1 forward + 2 backward (one per layer set, one guided)", backwards=2),
        compute=guided_grad_cam,
        input_rules=("guided",),
        layer_gradients=True,
        needs=Needs(layer=True),
    )
)
