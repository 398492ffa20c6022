"""Noisy linear imputation (ROAD, Rong et al. 2022, arXiv:2202.00449): every removed pixel
becomes the weighted mean of its 8 neighbours (1/6 for the 4 direct ones, 1/12 for the
diagonals; neighbours outside the image are left out), solved jointly for all removed pixels,
plus Gaussian noise. Removing a region this way leaves no flat patch whose shape could tell the
model where the relevant pixels were.

The linear system (a discrete Laplace equation with the kept pixels as boundary values) is
solved on the tensor's device with conjugate gradients, coarse to fine (cascadic multigrid):
the solution on a 2x coarser grid, upsampled, starts the iterations on the finer one. The
reference implementation solves the same system with a sparse direct solver on the CPU, one
image at a time; here a whole batch of masks is solved at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DIRECT, DIAGONAL = 1.0 / 6.0, 1.0 / 12.0
COARSEST = 16  # grids at most this size are solved to convergence


def neighbour_sum(v: torch.Tensor) -> torch.Tensor:
    """Σ_j w_j v_j over the 8 neighbours of every pixel of (B, C, H, W), zero outside."""
    p = F.pad(v, (1, 1, 1, 1))
    direct = p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]
    rows = p[..., :, :-2] + p[..., :, 2:]
    diagonal = rows[..., :-2, :] + rows[..., 2:, :]
    return DIRECT * direct + DIAGONAL * diagonal


def _conjugate_gradients(
    x: torch.Tensor, removed: torch.Tensor, start: torch.Tensor, iterations: int, tol: float
) -> torch.Tensor:
    """Solve deg_i v_i - Σ_{j removed} w_ij v_j = Σ_{j kept} w_ij x_j for the removed pixels."""
    degree = neighbour_sum(torch.ones_like(x[:1, :1]))

    def apply(u: torch.Tensor) -> torch.Tensor:
        return removed * (degree * u - neighbour_sum(u))

    b = removed * neighbour_sum(x * (1 - removed))
    v = start * removed
    r = b - apply(v)
    p = r
    rs = (r * r).sum(dim=(2, 3), keepdim=True)
    limit = (tol**2) * (b * b).sum(dim=(2, 3), keepdim=True)
    for _ in range(iterations):
        active = rs > limit  # a converged (image, channel) stops moving: batch-independent
        if not bool(active.any()):
            break
        ap = apply(p)
        alpha = rs / (p * ap).sum(dim=(2, 3), keepdim=True).clamp_min(1e-30)
        alpha = torch.where(active, alpha, torch.zeros_like(alpha))
        v = v + alpha * p
        r = r - alpha * ap
        rs_next = (r * r).sum(dim=(2, 3), keepdim=True)
        p = torch.where(active, r + (rs_next / rs.clamp_min(1e-30)) * p, p)
        rs = rs_next
    return v


def linear_imputation(
    x: torch.Tensor, removed: torch.Tensor, *, iterations: int = 24, tol: float = 1e-5
) -> torch.Tensor:
    """`x` (B, C, H, W) with the pixels where `removed` (B, 1, H, W) is true replaced by the
    solution of the ROAD neighbour equations (no noise). `iterations` of conjugate gradients per
    grid level; the coarsest level (at most 16 pixels a side) is solved to `tol`."""
    mask = removed.to(x.dtype)
    if min(x.shape[-2:]) > COARSEST:
        kept = F.avg_pool2d(1 - mask, 2, ceil_mode=True)
        coarse = F.avg_pool2d(x * (1 - mask), 2, ceil_mode=True) / kept.clamp_min(1e-6)
        filled = linear_imputation(coarse, kept < 0.5, iterations=iterations, tol=tol)
        start = F.interpolate(filled, size=x.shape[-2:], mode="bilinear", align_corners=False)
        steps = iterations
    else:
        start = torch.zeros_like(x)
        steps = 4 * x.shape[-1] * x.shape[-2]
    solved = _conjugate_gradients(x, mask, start, steps, tol)
    return torch.where(removed, solved, x)


def noisy_linear_imputation(
    x: torch.Tensor,
    removed: torch.Tensor,
    *,
    noise: float = 0.01,
    generator: torch.Generator | None = None,
    iterations: int = 24,
) -> torch.Tensor:
    """`linear_imputation` plus N(0, noise²) on the imputed pixels (the reference's 0.01, in
    model-input units)."""
    filled = linear_imputation(x, removed, iterations=iterations)
    if noise <= 0:
        return filled
    jitter = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device) * noise
    return torch.where(removed, filled + jitter, filled)
