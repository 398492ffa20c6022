"""From a method's raw map to what the metrics read: one relevance value per pixel, the order in
which pixels are removed, and [0, 1] weights.

Three 2-D views of a raw map (pixel-space maps are (N, 3, H, W), CAM-style maps (N, H, W) at
the input's resolution, raw and signed, e.g. Grad-CAM before its ReLU):

- `relevance`: what the method shows: Σ_c |m_c| for pixel maps (the usual reduction for
  gradient-type maps), ReLU(m) for CAMs (as Grad-CAM is defined and drawn). The pointing games,
  Average Drop and the sanity checks' "absolute" similarities read it.
- `order_values`: what sets the removal order: Σ_c |m_c| for pixel maps, the raw CAM (so that
  pixels the ReLU would tie at zero keep the method's own order, least relevant last).
- `signed`: Σ_c m_c for pixel maps, the raw CAM: the sanity checks' signed similarity.
"""

from __future__ import annotations

import torch

from ..postprocess import normalize


def relevance(map: torch.Tensor) -> torch.Tensor:
    """One relevance value per pixel: (N, C, H, W) -> Σ_c |m_c|; (N, H, W) -> ReLU(m)."""
    map = map.detach()
    if map.dim() == 4:
        return map.abs().sum(dim=1)
    return map.clamp_min(0)


def order_values(map: torch.Tensor) -> torch.Tensor:
    """The values that order pixels, most relevant first: (N, C, H, W) -> Σ_c |m_c|;
    (N, H, W) is kept signed."""
    map = map.detach()
    return map.abs().sum(dim=1) if map.dim() == 4 else map


def signed(map: torch.Tensor) -> torch.Tensor:
    """The signed per-pixel map: (N, C, H, W) -> Σ_c m_c (N, H, W); (N, H, W) is kept."""
    map = map.detach()
    return map.sum(dim=1) if map.dim() == 4 else map


def ranks(relevance2d: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The rank of every pixel of an (H, W) map, 0 for the most relevant, as a flat (H*W,)
    long tensor. Ties are broken by a random permutation drawn from `generator` (seeded by the
    caller), not by position: a blank region is removed in a random, reproducible order rather
    than from the top row down."""
    values = relevance2d.detach().flatten().float().cpu()
    n = values.numel()
    perm = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    order = perm[torch.argsort(values[perm], descending=True, stable=True)]
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)
    return rank


def pixel_counts(fractions: torch.Tensor, pixels: int) -> torch.Tensor:
    """How many pixels a fraction of the image is: round(f * pixels), as a long tensor."""
    return torch.round(fractions.double() * pixels).long()


def unit_weights(relevance2d: torch.Tensor) -> torch.Tensor:
    """Min-max scaled to [0, 1] (a constant map gives zeros): the multiplicative mask of
    Average Drop / Increase."""
    return normalize(relevance2d.detach().float()[None])[0]
