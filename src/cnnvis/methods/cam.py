"""Class activation maps: CAM and Grad-CAM, pure functions of a layer's activations
(and gradients, or the head's weights) from the shared recorded forward.

Every CAM reads its layer through `layer_activation` / `layer_gradient`, which give (N, C, h, w)
for convolutional layers and for transformers alike: (N, T, C) tokens (ViT, DeiT) lose their
prefix tokens and are reshaped to the patch grid; channels-last (N, H, W, C) outputs (Swin) are
permuted (see `to_spatial`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..capture import Recording
from ..errors import LayerError, MethodError
from .facts import Cost, MethodInfo, Needs
from .registry import register

MAX_PREFIX_TOKENS = 16  # class + distillation + register tokens dropped before the patch grid


def layer_activation(rec: Recording, layer: str | None) -> torch.Tensor:
    """The recorded activation at `layer` as (N, C, h, w) (see `to_spatial`); a LayerError if it
    has no spatial layout."""
    if layer is None:
        raise LayerError("this method needs a layer; give layer=NAME or leave it to the default")
    return to_spatial(rec.activations[layer], rec, layer)


def layer_gradient(rec: Recording, layer: str | None) -> torch.Tensor:
    """d(score)/d(activation) at `layer`, in the same (N, C, h, w) layout as `layer_activation`."""
    if layer is None:
        raise LayerError("this method needs a layer; give layer=NAME or leave it to the default")
    return to_spatial(rec.layer_gradient(layer), rec, layer)


def to_spatial(t: torch.Tensor, rec: Recording, layer: str) -> torch.Tensor:
    """A layer's output (or its gradient) as (N, C, h, w).

    - (N, C, H, W) is kept; (N, H, W, C) channels-last (torchvision's and timm's Swin) is
      permuted when only the last three dims read as (H, W, C): (H, W) must match the input's
      aspect ratio, and (C, H) must not.
    - (N, T, C) tokens: T = k + h*w with k prefix tokens (class, distillation, registers) first,
      dropped; (h, w) = input size // patch size when the model says its patch size
      (`patch_size`, `patch_embed.patch_size`), else the smallest k for which T - k tokens are
      the (H // p, W // p) grid of some patch size p.
    """
    size = (int(rec.inputs.shape[-2]), int(rec.inputs.shape[-1]))
    if t.dim() == 4:
        if not is_grid(t.shape[2], t.shape[3], size) and is_grid(t.shape[1], t.shape[2], size):
            return t.permute(0, 3, 1, 2)
        return t
    if t.dim() == 3:
        h, w, k = token_grid(t.shape[1], size, patch_size(rec.model))
        return t[:, k:].reshape(t.shape[0], h, w, t.shape[2]).permute(0, 3, 1, 2)
    raise LayerError(
        f"layer {layer} outputs shape {tuple(t.shape)}; CAM methods need a layer with spatial "
        "output (N, C, H, W), channels-last (N, H, W, C) or tokens (N, T, C): see "
        "cnnvis.list_layers(model)"
    )


def token_grid(
    tokens: int, size: tuple[int, int], patch: tuple[int, int] | None = None
) -> tuple[int, int, int]:
    """(h, w, k): the patch grid of `tokens` tokens for an input of `size` (H, W), and the
    number k of prefix tokens before it."""
    if patch is not None:
        h, w = size[0] // patch[0], size[1] // patch[1]
        if h * w and 0 <= tokens - h * w <= MAX_PREFIX_TOKENS:
            return h, w, tokens - h * w
    for k in range(min(tokens, MAX_PREFIX_TOKENS + 1)):
        n = tokens - k
        h = max(1, round(math.sqrt(n * size[0] / size[1])))
        if n % h == 0 and _patch_grid(h, n // h, size):
            return h, n // h, k
    raise LayerError(
        f"cannot arrange {tokens} tokens on a patch grid for a {size[0]}x{size[1]} input "
        f"(tried 0-{MAX_PREFIX_TOKENS} class/register tokens); choose a layer with a spatial "
        "output or tokens (N, 1 + h*w, C)"
    )


def is_grid(h: int, w: int, size: tuple[int, int]) -> bool:
    """Whether (h, w) can be a feature grid of an input of `size`: within it, and the two
    strides size/h and size/w within a factor 1.5 of each other."""
    if not (1 <= h <= size[0] and 1 <= w <= size[1]):
        return False
    ratio = (size[0] / h) / (size[1] / w)
    return 1 / 1.5 <= ratio <= 1.5


def _patch_grid(h: int, w: int, size: tuple[int, int]) -> bool:
    """Whether some patch size p gives exactly this grid: (H // p, W // p) == (h, w)."""
    return any(size[0] // p == h and size[1] // p == w for p in range(1, max(size) + 1))


def patch_size(model: nn.Module) -> tuple[int, int] | None:
    """The patch size a ViT declares (torchvision: `patch_size`; timm: `patch_embed.patch_size`)."""
    for owner in (model, getattr(model, "patch_embed", None)):
        patch = getattr(owner, "patch_size", None)
        if isinstance(patch, int) and patch > 0:
            return patch, patch
        if (
            isinstance(patch, tuple | list)
            and len(patch) == 2
            and all(isinstance(p, int) and p > 0 for p in patch)
        ):
            return int(patch[0]), int(patch[1])
    return None


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
