"""The geometry of feature maps and transformer tokens: which (h, w) grid a layer's output
lies on for a given input size, so that CAM methods read ViT/DeiT tokens (N, T, C) and Swin's
channels-last (N, H, W, C) outputs as (N, C, h, w) feature maps."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import Hint, LayerError

MAX_PREFIX_TOKENS = 16  # class + distillation + register tokens dropped before the patch grid


def to_spatial(
    t: torch.Tensor, size: tuple[int, int], model: nn.Module, layer: str
) -> torch.Tensor:
    """A layer's output (or its gradient) as (N, C, h, w), for an input of `size` (H, W).

    - (N, C, H, W) is kept; (N, H, W, C) channels-last (torchvision's and timm's Swin) is
      permuted when only the last three dims read as (H, W, C): (H, W) must match the input's
      aspect ratio, and (C, H) must not.
    - (N, T, C) tokens: T = k + h*w with k prefix tokens (class, distillation, registers) first,
      dropped; (h, w) = input size // patch size when the model says its patch size
      (`patch_size`, `patch_embed.patch_size`), else the smallest k for which T - k tokens are
      the (H // p, W // p) grid of some patch size p.
    """
    if t.dim() == 4:
        if not is_grid(t.shape[2], t.shape[3], size) and is_grid(t.shape[1], t.shape[2], size):
            return t.permute(0, 3, 1, 2)
        return t
    if t.dim() == 3:
        h, w, k = token_grid(t.shape[1], size, patch_size(model))
        return t[:, k:].reshape(t.shape[0], h, w, t.shape[2]).permute(0, 3, 1, 2)
    raise LayerError(
        f"layer {layer} outputs shape {tuple(t.shape)}; CAM methods need a layer with spatial "
        "output (N, C, H, W), channels-last (N, H, W, C) or tokens (N, T, C)",
        hint=Hint("layers"),
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
