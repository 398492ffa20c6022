"""Pixel-space maps from one backward pass under a rule: gradient, guided backprop, deconvnet."""

from __future__ import annotations

import torch

from ..capture import Recording
from .facts import Caveat, Cost, MethodInfo
from .registry import register


def gradient(rec: Recording, layer: str | None = None) -> torch.Tensor:
    """Vanilla gradient: d score_c / d x (Simonyan et al. 2014)."""
    return rec.input_gradient("plain")


def guided_backprop(rec: Recording, layer: str | None = None) -> torch.Tensor:
    """Guided backprop: the gradient with every ReLU passing only positive gradient where its
    input was positive (Springenberg et al. 2015)."""
    return rec.input_gradient("guided")


def deconvnet(rec: Recording, layer: str | None = None) -> torch.Tensor:
    """Deconvnet: the backward pass with every ReLU applied to the gradient itself, ignoring the
    forward input (Zeiler & Fergus 2014)."""
    return rec.input_gradient("deconvnet")


ONE_PASS = Cost("1 forward + 1 backward", backwards=1)

register(
    MethodInfo(
        name="gradient",
        order=10,
        kind="pixel",
        summary="Vanilla gradient of the class score with respect to the input pixels.",
        formula="∂y_c/∂x",
        paper="Simonyan, Vedaldi & Zisserman 2014, arXiv:1312.6034",
        cost=ONE_PASS,
        compute=gradient,
        input_rules=("plain",),
    )
)
register(
    MethodInfo(
        name="guided-backprop",
        order=11,
        kind="pixel",
        summary="Gradient where every ReLU passes only positive gradients at positive inputs.",
        formula="ReLU backward: 1[x>0]·max(g, 0)",
        paper="Springenberg et al. 2015, arXiv:1412.6806",
        cost=ONE_PASS,
        compute=guided_backprop,
        input_rules=("guided",),
    )
)
register(
    MethodInfo(
        name="deconvnet",
        order=12,
        kind="pixel",
        summary="Zeiler & Fergus' deconvnet: ReLU applied to the backward signal itself.",
        formula="ReLU backward: max(g, 0)",
        paper="Zeiler & Fergus 2014, arXiv:1311.2901",
        cost=ONE_PASS,
        compute=deconvnet,
        input_rules=("deconvnet",),
        caveats=(
            Caveat(
                ("batchnorm", "depthwise"),
                "known to draw patterns unrelated to the class on such networks",
            ),
        ),
    )
)
