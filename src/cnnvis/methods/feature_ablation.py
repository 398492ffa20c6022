"""Feature ablation: the score drop when one feature (a superpixel or grid cell) is replaced by
the baseline, from batched forwards without gradients (Captum's `FeatureAblation`)."""

from __future__ import annotations

from typing import Any

import torch

from ..capture import Recording
from ..forwards import fast_settings
from ._batching import accumulator, chunks, positive_int, scoring
from ._superpixels import counts, feature_mask
from .facts import Cost, MethodInfo, Needs
from .integrated_gradients import make_baseline
from .registry import register


def feature_rows(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(image, feature) of every row when each image's features are laid out one after the
    other: image i owns K_i consecutive rows."""
    k = counts(mask)
    image = torch.repeat_interleave(torch.arange(len(k), device=mask.device), k)
    start = torch.cumsum(k, 0) - k
    return image, torch.arange(len(image), device=mask.device) - start[image]


def feature_ablation(
    rec: Recording,
    layer: str | None = None,
    *,
    features: str | torch.Tensor = "slic",
    segments: int = 50,
    compactness: float = 10.0,
    cell: int = 16,
    baseline: str | torch.Tensor = "zeros",
    batch_size: int = 64,
    seed: int = 0,
    blur_sigma: float = 5.0,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """attr[p] = y(x) − y(x with p's feature set to the baseline), the same for every pixel of
    a feature (Captum's `FeatureAblation` with `feature_mask`).

    `features`: "slic" (about `segments` SLIC superpixels of `compactness`), "grid" (cells of
    `cell` pixels) or a tensor of integer labels (H, W) / (N, H, W). `baseline`: what an ablated
    feature becomes, a name from integrated-gradients ("zeros", Captum's default, "black",
    "blurred", "noise") or a tensor. One forward per feature, `batch_size` at a time, under
    inference mode. Returns the map and, per image, the number of features.
    """
    batch_size = positive_int("batch_size", batch_size, "feature-ablation")
    x = rec.inputs.detach()
    mask = feature_mask(
        x,
        features,
        segments=segments,
        compactness=compactness,
        cell=cell,
        method="feature-ablation",
    )
    filled = make_baseline(rec, x, baseline, seed, blur_sigma)
    image_of, feature_of = feature_rows(mask)
    total = accumulator(x)
    per_forward = min(batch_size, len(image_of))
    with scoring(rec, rows=per_forward, **fast_settings(x, per_forward)) as score:
        images = torch.arange(x.shape[0], device=x.device)
        reference = score(x)[images, images]
        for chunk in chunks(len(image_of), batch_size):
            rows = chunk.to(x.device)
            image = image_of[rows]
            off = (mask[image] == feature_of[rows].view(-1, 1, 1))[:, None]
            batch = torch.where(off, filled[image], x[image])
            drops = reference[image] - score(batch)[torch.arange(len(rows)), image]
            change = (drops.to(total.dtype).view(-1, 1, 1, 1) * off).expand(-1, x.shape[1], -1, -1)
            total.index_add_(0, image, change)
    return total.to(x.dtype), {"features": counts(mask).tolist()}


register(
    MethodInfo(
        name="feature-ablation",
        order=42,
        kind="pixel",
        sign="signed",
        summary="The score drop when each superpixel (or grid cell) is replaced by a baseline.",
        formula="y_c(x) − y_c(x with feature S ∋ p set to x′)",
        paper="Zeiler & Fergus 2014, arXiv:1311.2901 (occlusion); Captum FeatureAblation",
        cost=Cost(
            "1 forward + 1 forward per feature (a superpixel or grid window), in batches",
            forwards=1,
            per="window",
        ),
        compute=feature_ablation,
        needs=Needs(baseline=True),
    )
)
