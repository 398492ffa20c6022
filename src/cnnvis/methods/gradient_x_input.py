"""Gradient x input: the plain gradient weighted by the input, from the shared recorded pass."""

from __future__ import annotations

import torch

from ..capture import Recording
from .facts import Cost, MethodInfo
from .registry import register


def gradient_x_input(rec: Recording, layer: str | None = None) -> torch.Tensor:
    """x ⊙ ∂y/∂x (Shrikumar et al. 2016), x the model input (normalized, as the model sees it).

    On a linear model y = w·x + b it is each feature's contribution w ⊙ x exactly.
    """
    return rec.inputs.detach() * rec.input_gradient("plain")


register(
    MethodInfo(
        name="gradient-x-input",
        order=13,
        kind="pixel",
        sign="signed",
        summary="The input times its gradient: each pixel's first-order contribution.",
        formula="x ⊙ ∂y_c/∂x",
        paper="Shrikumar et al. 2016, arXiv:1605.01713",
        cost=Cost("1 forward + 1 backward", backwards=1),
        compute=gradient_x_input,
        input_rules=("plain",),
    )
)
