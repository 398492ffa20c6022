"""D-RISE as a method: black-box saliency of one detected box (Petsiuk et al., CVPR 2021),
from seeded random masks in batches; the algorithm lives in `cnnvis.detection.drise`."""

from __future__ import annotations

from typing import Any

import torch

from ..capture import Recording
from ..detection import BoxTarget, drise
from ..errors import MethodError
from ..targets import describe
from ._batching import positive_int
from .facts import Cost, MethodInfo, Needs
from .registry import register


def drise_map(
    rec: Recording,
    layer: str | None = None,
    *,
    masks: int = 1000,
    grid: int = 16,
    probability: float = 0.5,
    seed: int = 0,
    batch_size: int = 32,
) -> torch.Tensor:
    """The D-RISE map of each image's box target, the same map in every channel (N, C, H, W).

    The target must be a box (`box:0`, `box:x0,y0,x1,y1@label`, a `BoxTarget`); each image is
    explained with its own box (bound to its unmasked detections) and the same seeded masks.
    `masks`: how many; `grid`: cells per side of a mask; `probability`: of keeping a cell."""
    count = positive_int("masks", masks, "drise")
    grid = positive_int("grid", grid, "drise")
    batch_size = positive_int("batch_size", batch_size, "drise")
    if not 0.0 < probability < 1.0:
        raise MethodError(f"drise: probability must be in (0, 1), got {probability!r}")
    x = rec.inputs.detach()
    maps = []
    for n in range(x.shape[0]):
        target = _box_of_row(rec, n)
        maps.append(
            drise(
                rec.model,
                x[n],
                target,
                count,
                grid=grid,
                probability=probability,
                batch_size=batch_size,
                seed=seed,
            )
        )
    return torch.stack(maps)[:, None].expand_as(x).contiguous()


def _box_of_row(rec: Recording, n: int) -> BoxTarget:
    """The box target of image n (a per-image list's part for that image)."""
    target: Any = rec.target_rows(torch.tensor([n]))
    parts, owner = getattr(target, "parts", None), getattr(target, "owner", None)
    if parts is not None and owner is not None:
        target = parts[int(owner[0])]
    if not isinstance(target, BoxTarget):
        raise MethodError(
            f"drise explains a detected box, and the target of image {n} is "
            f"{describe(target)}; give a box target (box:0 for the first detected box, or "
            "box:x0,y0,x1,y1@label) on a detector's output, or use 'rise' for a class"
        )
    return target


register(
    MethodInfo(
        name="drise",
        order=46,
        kind="pixel",
        sign="mean-relative",
        summary="A detected box's similarity on randomly masked copies, averaged with the masks.",
        formula="Σ_i max_j IoU·cos·obj(d_t, d_j(x ⊙ M_i)) M_i / N",
        paper="Petsiuk et al. 2021, CVPR (arXiv:2006.03204)",
        cost=Cost("1 forward per mask (N, in batches, no backward)", forwards=1, per="mask"),
        compute=drise_map,
        needs=Needs(masks=True),
    )
)
