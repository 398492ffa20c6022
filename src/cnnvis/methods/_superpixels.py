"""Feature masks for the perturbation methods that switch groups of pixels on and off (feature
ablation, KernelSHAP, LIME, Shapley value sampling): SLIC superpixels, a grid, or the user's.

A feature mask is a LongTensor (N, H, W): image i's pixels numbered 0 .. K_i − 1, every number
used, every channel of a pixel in the same feature (Captum's `feature_mask` of shape
(N, 1, H, W))."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import MethodError

FEATURES = ("slic", "grid")


def feature_mask(
    x: torch.Tensor,
    features: str | torch.Tensor,
    *,
    segments: int,
    compactness: float,
    cell: int,
    method: str,
) -> torch.Tensor:
    """The feature mask (N, H, W) of the inputs x (N, C, H, W): "slic" (scikit-image's SLIC
    superpixels, about `segments` of them with `compactness`, on each image min-max scaled),
    "grid" (square cells of `cell` pixels), or a tensor of integer labels (H, W), (N, H, W) or
    (N, 1, H, W), renumbered 0 .. K − 1 per image."""
    n, _, h, w = x.shape
    if isinstance(features, torch.Tensor):
        return _renumbered(_given(features, n, h, w, method))
    if features == "grid":
        if isinstance(cell, bool) or not isinstance(cell, int) or cell < 1:
            raise MethodError(f"{method}: cell must be a positive integer, got {cell!r}")
        rows, cols = torch.arange(h) // cell, torch.arange(w) // cell
        grid = rows[:, None] * math.ceil(w / cell) + cols[None, :]
        return grid.expand(n, h, w).to(x.device).clone()
    if features == "slic":
        if isinstance(segments, bool) or not isinstance(segments, int) or segments < 1:
            raise MethodError(f"{method}: segments must be a positive integer, got {segments!r}")
        if not compactness > 0:
            raise MethodError(f"{method}: compactness must be > 0, got {compactness!r}")
        labels = [_slic(image, segments, float(compactness)) for image in x]
        return _renumbered(torch.stack(labels).to(x.device))
    raise MethodError(
        f"{method}: features must be one of {', '.join(FEATURES)} or a tensor of labels; "
        f"got {features!r}"
    )


def _given(mask: torch.Tensor, n: int, h: int, w: int, method: str) -> torch.Tensor:
    if mask.dtype.is_floating_point or mask.dtype.is_complex or mask.dtype == torch.bool:
        raise MethodError(f"{method}: a feature mask holds integer labels, got {mask.dtype}")
    if mask.dim() == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if mask.dim() == 2:
        mask = mask[None]
    if mask.dim() != 3 or mask.shape[1:] != (h, w) or mask.shape[0] not in (1, n):
        raise MethodError(
            f"{method}: a feature mask must be (H, W), (N, H, W) or (N, 1, H, W) with H, W = "
            f"{h}, {w} and N = 1 or {n}; got {tuple(mask.shape)}"
        )
    return mask.expand(n, h, w).long()


def _renumbered(mask: torch.Tensor) -> torch.Tensor:
    """Each image's labels as 0 .. K − 1 in increasing order of the given labels."""
    out = torch.empty_like(mask)
    for i, labels in enumerate(mask):
        _, out[i] = torch.unique(labels, return_inverse=True)
    return out


def _slic(image: torch.Tensor, segments: int, compactness: float) -> torch.Tensor:
    from skimage.segmentation import slic  # scikit-image: a dependency, slow to import

    picture = image.detach().float().cpu()
    low, high = picture.amin(), picture.amax()
    array = ((picture - low) / (high - low).clamp(min=1e-12)).permute(1, 2, 0).numpy()
    channel_axis: int | None = -1
    if array.shape[-1] != 3:
        array, channel_axis = array.mean(-1), None
    labels = slic(
        np.ascontiguousarray(array, dtype=np.float64),
        n_segments=segments,
        compactness=compactness,
        start_label=0,
        channel_axis=channel_axis,
    )
    return torch.from_numpy(np.asarray(labels, dtype=np.int64))


def counts(mask: torch.Tensor) -> torch.Tensor:
    """K_i, the number of features of each image (N,)."""
    return mask.flatten(1).amax(1) + 1
