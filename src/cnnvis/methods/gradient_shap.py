"""GradientSHAP: expected gradients over a distribution of baselines (Lundberg & Lee 2017;
Erion et al. 2021), Captum's `GradientShap`, computed `batch_size` path points at a time."""

from __future__ import annotations

from typing import Any

import torch

from ..capture import Recording
from ..errors import MethodError
from ..forwards import fast_settings
from ._batching import accumulator, chunks, input_gradients, positive_int
from .facts import Cost, MethodInfo, Needs
from .integrated_gradients import BASELINES, completeness, make_baseline
from .registry import register

DEFAULT_BASELINES = "black,blurred,noise"


def references(
    rec: Recording, x: torch.Tensor, baselines: str | torch.Tensor, seed: int, blur_sigma: float
) -> torch.Tensor:
    """The baselines as (N, M, C, H, W): M named ones (integrated-gradients' "black",
    "zeros", "blurred", "noise", comma-separated) per image, or a tensor of M model inputs
    (M, C, H, W) (or one (C, H, W)) shared by every image."""
    if isinstance(baselines, torch.Tensor):
        refs = baselines.detach().to(x.device, x.dtype)
        refs = refs[None] if refs.dim() == x.dim() - 1 else refs
        if refs.dim() != x.dim() or refs.shape[1:] != x.shape[1:] or not len(refs):
            shape = ", ".join(map(str, x.shape[1:]))
            raise MethodError(
                f"gradient-shap: baselines must be model inputs shaped (M, {shape}), got "
                f"{tuple(baselines.shape)}"
            )
        return refs[None].expand(x.shape[0], *refs.shape)
    if not isinstance(baselines, str):
        raise MethodError(f"gradient-shap: baselines must be names or a tensor, got {baselines!r}")
    names = [name.strip() for name in baselines.split(",") if name.strip()]
    if not names or any(name not in BASELINES for name in names):
        raise MethodError(
            f"gradient-shap: baselines must be a comma-separated list of {', '.join(BASELINES)} "
            f"or a tensor, got {baselines!r}"
        )
    return torch.stack([make_baseline(rec, x, name, seed, blur_sigma) for name in names], 1)


def draws(samples: int, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(which baseline, alpha ~ U(0, 1)) for each sample, seeded and shared by the images of
    a batch, so a batch gives exactly the per-image results."""
    generator = torch.Generator().manual_seed(seed)
    which = torch.randint(count, (samples,), generator=generator)
    alphas = torch.rand(samples, generator=generator, dtype=torch.float64)
    return which, alphas


def gradient_shap(
    rec: Recording,
    layer: str | None = None,
    *,
    baselines: str | torch.Tensor = DEFAULT_BASELINES,
    samples: int = 32,
    noise: float = 0.0,
    batch_size: int = 32,
    seed: int = 0,
    blur_sigma: float = 5.0,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """E_{x′~B, α~U(0,1)}[(x − x′) ⊙ ∂y/∂x(x′ + α(x − x′))] by Monte Carlo over `samples`
    draws (Lundberg & Lee 2017, "GradientExplainer"; Erion et al. 2021, expected gradients).

    Integrated gradients with the baseline drawn from a distribution B and the path point
    drawn at random: in expectation Σ attr = y(x) − E_B[y(x′)] (exact on a linear model).
    `baselines`: names from integrated-gradients ("black", "zeros", "blurred", "noise";
    default black, blurred and a seeded noise picture) or a tensor of M model inputs (for
    instance images of the dataset, as expected gradients uses). `noise` > 0 adds N(0, noise²)
    to the input of each draw (Captum's `stdevs`). Returns the map and, per image, the score
    difference y(x) − mean_B y(x′) and the completeness error of the estimate.
    """
    samples = positive_int("samples", samples, "gradient-shap")
    batch_size = positive_int("batch_size", batch_size, "gradient-shap")
    if not noise >= 0:
        raise MethodError(f"gradient-shap: noise must be >= 0, got {noise!r}")
    info: dict[str, Any] = {"samples": samples, "noise": noise, "batch_size": batch_size}
    if isinstance(baselines, str):
        info["baselines"] = baselines
    x = rec.inputs.detach()
    n = x.shape[0]
    refs = references(rec, x, baselines, seed, blur_sigma)
    which, alphas = draws(samples, refs.shape[1], seed)
    generator = torch.Generator().manual_seed(seed + 1)
    eps = noise * torch.randn((samples, *x.shape[1:]), generator=generator, dtype=x.dtype)
    which, alphas, eps = which.to(x.device), alphas.to(x.device, x.dtype), eps.to(x.device)
    with input_gradients(rec, **fast_settings(x, min(batch_size, n * samples), fold=False)) as grad:
        total = accumulator(x)
        flat = refs.reshape(-1, *x.shape[1:])
        owners = torch.arange(n, device=x.device).repeat_interleave(refs.shape[1])
        _, at_refs = grad(flat, rec.target_rows(owners), backward=False)
        for rows in chunks(n * samples, batch_size):  # row r: draw r // n of image r % n
            image, draw = (rows % n).to(x.device), (rows // n).to(x.device)
            start = refs[image, which[draw]]
            delta = x[image] + eps[draw] - start
            point = torch.addcmul(start, alphas[draw].view(-1, 1, 1, 1), delta)
            g, _ = grad(point, rec.target_rows(image))
            total.index_add_(0, image, (g * delta).to(total.dtype))
    attribution = (total / samples).to(x.dtype)
    difference, error = completeness(rec, attribution, at_refs.view(n, -1).mean(1))
    return attribution, {**info, "score_difference": difference, "completeness_error": error}


register(
    MethodInfo(
        name="gradient-shap",
        order=16,
        kind="pixel",
        sign="signed",
        summary="Integrated gradients with random path points from a distribution of baselines.",
        formula="E_{x′~B, α~U(0,1)}[(x−x′) ⊙ ∂y_c/∂x(x′+α(x−x′))]",
        paper="Lundberg & Lee 2017, arXiv:1705.07874; Erion et al. 2021, arXiv:1906.10670",
        cost=Cost(
            "1 forward + samples forward/backward pairs (in batches) + 1 forward per baseline",
            forwards=2,
            per="sample",
        ),
        compute=gradient_shap,
        needs=Needs(baseline=True),
    )
)
