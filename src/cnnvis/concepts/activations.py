"""A layer's activations over a set of images: one guarded, hooked forward per chunk."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import Hint, LayerError
from ..forwards import guarded_forward, output_hook
from ..layers import resolve_layer


def layer_activations(
    model: nn.Module, x: torch.Tensor, layer: str, batch_size: int = 32
) -> torch.Tensor:
    """`layer`'s output (N, C, h, w) for model input `x` (N, ...), without gradients, on the
    model's device; forwards of `batch_size` rows through `forwards.guarded_forward`."""
    store: dict[str, Any] = {}
    hook = output_hook(store, layer, lambda t: t.detach(), protect=True)
    chunks = []
    with guarded_forward(
        model, hooks=[(resolve_layer(model, layer), hook)], grad=False, inference=True, like=x
    ):
        for start in range(0, len(x), batch_size):
            store.clear()
            model(x[start : start + batch_size])
            if layer not in store:
                raise LayerError(f"layer {layer!r} did not run in the forward pass")
            chunks.append(store[layer])
    acts = torch.cat(chunks)
    if acts.dim() != 4:
        raise LayerError(
            f"layer {layer!r} has output shape {tuple(acts.shape)}, not (N, C, H, W): concepts "
            "need a layer with spatial activations; choose a convolutional layer",
            hint=Hint("layers"),
        )
    return acts
