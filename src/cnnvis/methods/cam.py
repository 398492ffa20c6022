"""Class activation maps: CAM and Grad-CAM, pure functions of a layer's activations
(and gradients, or the head's weights) from the shared recorded forward.

Every CAM reads its layer through `layer_activation` / `layer_gradient`, which give (N, C, h, w)
for convolutional layers and for transformers alike: (N, T, C) tokens (ViT, DeiT) lose their
prefix tokens and are reshaped to the patch grid; channels-last (N, H, W, C) outputs (Swin) are
permuted (see `cnnvis.layers.to_spatial`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..capture import Recording
from ..errors import LayerError, MethodError
from ..layers import to_spatial
from ..targets import ClassTarget, describe
from .facts import Cost, MethodInfo, Needs
from .registry import register


def required_layer(layer: str | None) -> str:
    """`layer`, or a LayerError when a method that needs one got None."""
    if layer is None:
        raise LayerError("this method needs a layer; give layer=NAME or leave it to the default")
    return layer


def layer_activation(rec: Recording, layer: str | None) -> torch.Tensor:
    """The recorded activation at `layer` as (N, C, h, w) (see `to_spatial`); a LayerError if it
    has no spatial layout."""
    layer = required_layer(layer)
    return to_spatial(rec.activations[layer], _input_size(rec), rec.model, layer)


def layer_gradient(rec: Recording, layer: str | None) -> torch.Tensor:
    """d(score)/d(activation) at `layer`, in the same (N, C, h, w) layout as `layer_activation`."""
    layer = required_layer(layer)
    return to_spatial(rec.layer_gradient(layer), _input_size(rec), rec.model, layer)


def _input_size(rec: Recording) -> tuple[int, int]:
    return int(rec.inputs.shape[-2]), int(rec.inputs.shape[-1])


def weighted_sum(acts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_k w[n, k] * A[n, k] -> (N, h, w)."""
    return torch.einsum("nk,nkhw->nhw", weights, acts)


def grad_cam(rec: Recording, layer: str | None) -> torch.Tensor:
    """Grad-CAM, raw (before its ReLU): sum_k (mean_ij ∂y_c/∂A_kij) A_k (Selvaraju et al. 2017)."""
    acts = layer_activation(rec, layer)
    grads = layer_gradient(rec, layer)
    return weighted_sum(acts.detach(), grads.mean(dim=(2, 3)))


def linear_head(model: nn.Module, channels: int, classes: int) -> nn.Linear:
    """The last nn.Linear mapping `channels` features to `classes` logits."""
    heads = [
        m
        for m in model.modules()
        if isinstance(m, nn.Linear) and m.in_features == channels and m.out_features == classes
    ]
    if not heads:
        raise MethodError(
            f"cam needs a linear classifier from {channels} features to {classes} classes after "
            "global average pooling; this model has none. Use 'grad-cam', which equals CAM up "
            "to a positive scale on such heads and works on any head"
        )
    return heads[-1]


def cam(rec: Recording, layer: str | None) -> torch.Tensor:
    """CAM: sum_k w_ck A_k with w the linear head's weights for class c (Zhou et al. 2016).

    Only defined when the layer feeds global average pooling and one linear layer; checked on
    the recorded values: logits must equal W · mean_ij(A) + b.
    """
    acts = layer_activation(rec, layer).detach()
    if not isinstance(rec.target, ClassTarget) or rec.target.score != "logit":
        raise MethodError(
            f"cam weighs the feature maps by the linear head's weights of a class's logit, and "
            f"the target is {describe(rec.target)}; explain a class's logit (e.g. 285, top1) "
            "or use 'grad-cam', which works with any target"
        )
    classes = rec.logits.shape[1]
    head = linear_head(rec.model, acts.shape[1], classes)
    weight = head.weight.detach().to(acts.dtype)
    pooled = acts.mean(dim=(2, 3)) @ weight.T
    if head.bias is not None:
        pooled = pooled + head.bias.detach().to(acts.dtype)
    logits = rec.logits.detach().to(acts.dtype)
    tol = 1e-3 * (1 + logits.abs().max())
    if not torch.allclose(pooled, logits, atol=float(tol), rtol=1e-3):
        raise MethodError(
            f"cam needs layer {layer} to feed global average pooling and a linear classifier "
            "directly, and here the logits are not W·mean(A)+b; choose the layer just before the "
            "pooling (cnnvis.list_layers marks the default) or use 'grad-cam'"
        )
    return weighted_sum(acts, weight[rec.targets])


register(
    MethodInfo(
        name="cam",
        order=20,
        kind="cam",
        summary="Class activation map: the head's class weights applied to the last feature maps.",
        formula="Σ_k w_ck A_k",
        paper="Zhou et al. 2016, arXiv:1512.04150",
        cost=Cost("1 forward"),
        compute=cam,
        needs=Needs(layer=True, head=True),
    )
)
register(
    MethodInfo(
        name="grad-cam",
        order=21,
        kind="cam",
        summary="Feature maps weighted by their spatially averaged gradients.",
        formula="ReLU(Σ_k mean_ij(∂y_c/∂A_kij) A_k)",
        paper="Selvaraju et al. 2017, arXiv:1610.02391",
        cost=Cost("1 forward + 1 backward to the layer", backwards=1),
        compute=grad_cam,
        layer_gradients=True,
        needs=Needs(layer=True),
    )
)
