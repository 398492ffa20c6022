"""What the classifier head says about a concept: the model's output when the layer shows the
concept's basis vector at every position.

For the usual head after the last spatial layer (global pooling, then linear layers) this is
the head applied to the vector itself, as pytorch-grad-cam's `DeepFeatureFactorization` does
with its `computation_on_concepts`; here the head is found by running the rest of the model,
so no head has to be named. The layer's output is replaced by a forward hook (through
`forwards.guarded_forward`, removed on exit); what runs before the layer sees a blank input.
Exact when what follows the layer depends on the layer alone (no skip connection around it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from ..forwards import first_tensor, guarded_forward
from ..layers import resolve_layer


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

    blank = torch.zeros((k, *input_shape[1:]), dtype=basis.dtype, device=basis.device)
    hooks = [(resolve_layer(model, layer), replace)]
    with guarded_forward(model, hooks=hooks, grad=False, inference=True, like=blank):
        try:
            output = model(blank)
        except RuntimeError as error:
            raise ModelError(
                f"the model did not run on layer {layer!r}'s concepts in place of its output "
                f"({error}); pass an explicit head= callable"
            ) from error
    logits, _ = first_tensor(output)
    if logits is None or logits.dim() != 2 or logits.shape[0] != k:
        return None
    return logits.float()
