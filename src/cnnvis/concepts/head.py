"""What the classifier head says about a concept: the model's output when the layer shows the
concept's basis vector at every position.

For the usual head after the last spatial layer (global pooling, then linear layers) this is
the head applied to the vector itself, as pytorch-grad-cam's `DeepFeatureFactorization` does
with its `computation_on_concepts`; here the head is found by running the rest of the model,
so no head has to be named. The layer's output is replaced by a forward hook (through
`forwards.guarded_forward`, removed on exit); what runs before the layer sees a blank input, a
quarter of the side when the model takes it (its output is thrown away), else full size.
Exact when what follows the layer depends on the layer alone (no skip connection around it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from ..forwards import first_tensor, guarded_forward
from ..layers import resolve_layer

MIN_SIDE = 32  # pixels of the small blank input


def concept_logits(
    model: nn.Module,
    layer: str,
    basis: torch.Tensor,
    input_shape: tuple[int, ...],
    grid: tuple[int, int],
) -> torch.Tensor | None:
    """The model's (K, classes) output for each concept of `basis` (K, C) spread over the
    layer's (h, w) `grid`; None when the model's output is not one (K, classes) tensor."""
    k = basis.shape[0]
    spread = basis[:, :, None, None].expand(-1, -1, *grid).contiguous()

    def replace(module: nn.Module, args: Any, output: Any) -> Any:
        tensor, rebuild = first_tensor(output)
        if tensor is None or rebuild is None:
            return None
        return rebuild(spread.to(tensor.dtype))

    hooks = [(resolve_layer(model, layer), replace)]
    full = (k, *input_shape[1:])
    sides = (min(side, max(MIN_SIDE, -(-side // 4))) for side in input_shape[-2:])
    small = (k, *input_shape[1:-2], *sides)
    output = None
    if small != full:  # what runs before the layer is thrown away: run it on a smaller blank
        try:
            output = _run(model, hooks, torch.zeros(small, dtype=basis.dtype, device=basis.device))
        except (RuntimeError, ValueError, AssertionError):  # the model wants its own input size
            output = None
    if output is None:
        blank = torch.zeros(full, dtype=basis.dtype, device=basis.device)
        try:
            output = _run(model, hooks, blank)
        except RuntimeError as error:
            raise ModelError(
                f"the model did not run on layer {layer!r}'s concepts in place of its output "
                f"({error}); pass an explicit head= callable"
            ) from error
    logits, _ = first_tensor(output)
    if logits is None or logits.dim() != 2 or logits.shape[0] != k:
        return None
    return logits.float()


def _run(model: nn.Module, hooks: list[tuple[nn.Module, Any]], blank: torch.Tensor) -> Any:
    with guarded_forward(model, hooks=hooks, grad=False, inference=True, like=blank):
        return model(blank)
