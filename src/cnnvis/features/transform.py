"""Transformation robustness: random jitter, scale and rotation, applied before every step.

A picture that still excites the unit after being shifted a few pixels, zoomed and turned a few
degrees cannot rely on pixel-exact high-frequency patterns (Olah et al. 2017; lucid's
`standard_transforms`: pad, jitter 8, scale 0.9-1.1, rotate ±10°, jitter 4; with ~4x fewer
steps than lucid's 512, somewhat stronger transforms gave clearer pictures here). All of it is
one differentiable affine resampling per image; what comes into view from outside is grey.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Robustness:
    """The random transforms: shift by up to `jitter` of the image side (16 px at 224), zoom
    by a factor in `scale`, turn by up to ±`degrees`.

    A zoom below 1 shrinks the image inside a grey frame (lucid's padding).
    """

    jitter: float = 1 / 14
    scale: tuple[float, float] = (0.8, 1.2)
    degrees: float = 15.0
    fill: float = 0.5

    @property
    def identity(self) -> bool:
        return self.jitter == 0 and self.scale == (1.0, 1.0) and self.degrees == 0


NONE = Robustness(jitter=0.0, scale=(1.0, 1.0), degrees=0.0)


def random_affine(x: torch.Tensor, how: Robustness, generator: torch.Generator) -> torch.Tensor:
    """Each image of x (N, 3, H, W) resampled by its own random shift, zoom and rotation.

    The random numbers come from `generator` (on the CPU), so a seed fixes them on any device.
    """
    if how.identity:
        return x
    n = len(x)
    u = torch.rand(n, 4, generator=generator, dtype=torch.float64)
    angle = (2 * u[:, 0] - 1) * math.radians(how.degrees)
    zoom = how.scale[0] + u[:, 1] * (how.scale[1] - how.scale[0])
    shift_x = (2 * u[:, 2] - 1) * how.jitter * 2  # in units of half the image side
    shift_y = (2 * u[:, 3] - 1) * how.jitter * 2
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1
    ).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    moved = F.grid_sample(
        x - how.fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return moved + how.fill
