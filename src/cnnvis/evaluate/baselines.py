"""Maps that know nothing about the model, shown beside every method: if a method does no better
than these on a metric, that metric says little about the method (Adebayo et al. 2018; the
TorchRay pointing-game tables always list the centre baseline).

- random: a smooth random map, `grid` x `grid` uniform values upsampled bilinearly, scored as
  the mean over `draws` independent maps (one draw is too noisy to compare with: on the
  default model its deletion AUC ranges 0.05-0.43 on one image). Per-pixel noise would be
  unfair: scattered deletions are far out of distribution and kill the prediction faster than
  any map (deletion AUC 0.08 for per-pixel noise against 0.30 for a 7 x 7 random map and 0.22
  for Grad-CAM, REFERENCE).
- centre: a Gaussian centred on the image, sigma a quarter of the shorter side. Photographs
  put their object in the middle, so this is strong on the pointing game.
- edges: the Sobel gradient magnitude of the image (summed over channels).
- reversed: the method's own order reversed (least relevant first). It is an order, so it is
  scored on the order-based metrics only (deletion, insertion, ROAD).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BASELINES: tuple[str, ...] = ("random", "centre", "edges", "reversed")
SHARED_BASELINES: tuple[str, ...] = ("random", "centre", "edges")  # one map per image
REVERSED_PREFIX = "reversed:"
ORDER_METRICS: tuple[str, ...] = ("deletion", "insertion", "road-morf", "road-lerf")
RANDOM_DRAWS = 8
DRAW_MARK = "#"  # random#0, random#1, ...: the draws, merged into "random"


def smooth_random(
    size: tuple[int, int], grid: int = 7, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(H, W): a `grid` x `grid` map of U(0, 1) values upsampled bilinearly (align_corners=False)."""
    cells = torch.rand(1, 1, grid, grid, generator=generator)
    return F.interpolate(cells, size=size, mode="bilinear", align_corners=False)[0, 0]


def centre_gaussian(size: tuple[int, int], sigma: float | None = None) -> torch.Tensor:
    """(H, W): exp(-((y - cy)² + (x - cx)²) / (2 sigma²)), centre ((H-1)/2, (W-1)/2), sigma
    min(H, W) / 4 by default."""
    h, w = size
    sigma = min(h, w) / 4 if sigma is None else sigma
    y = torch.arange(h, dtype=torch.float32) - (h - 1) / 2
    x = torch.arange(w, dtype=torch.float32) - (w - 1) / 2
    return torch.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))


SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_edges(image: torch.Tensor) -> torch.Tensor:
    """(H, W): Σ_c sqrt(Gx_c² + Gy_c²), Sobel kernels, replicated border; `image` is (C, H, W)."""
    x = image.detach().float().cpu()[:, None]
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(padded, SOBEL_X[None, None])
    gy = F.conv2d(padded, SOBEL_X.T.contiguous()[None, None])
    return (gx**2 + gy**2).sqrt().sum(dim=0)[0]


def baseline_maps(
    image: torch.Tensor,
    names: tuple[str, ...],
    *,
    grid: int = 7,
    draws: int = RANDOM_DRAWS,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """The shared baselines among `names` for one model input `image` (C, H, W), as (H, W)
    relevance maps on the CPU; the random baseline as `draws` maps random#0, random#1, ..."""
    size = (int(image.shape[-2]), int(image.shape[-1]))
    maps: dict[str, torch.Tensor] = {}
    for name in names:
        if name == "random":
            for k in range(draws):
                maps[f"random{DRAW_MARK}{k}"] = smooth_random(size, grid, generator)
        elif name == "centre":
            maps[name] = centre_gaussian(size)
        elif name == "edges":
            maps[name] = sobel_edges(image)
    return maps
