"""Shapley value sampling: each feature's mean marginal contribution over random orders of
adding the features to the baseline (Castro et al. 2009; Strumbelj & Kononenko 2010),
Captum's `ShapleyValueSampling`, from batched forwards without gradients."""

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


def permutations(features: int, samples: int, seed: int) -> torch.Tensor:
    """(samples, features) orders, `torch.randperm` from a generator seeded `seed` (Captum
    draws the same ones from the global generator seeded alike)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(features, generator=generator) for _ in range(samples)])


def shapley_sampling(
    rec: Recording,
    layer: str | None = None,
    *,
    samples: int = 25,
    features: str | torch.Tensor = "slic",
    segments: int = 50,
    compactness: float = 10.0,
    cell: int = 16,
    baseline: str | torch.Tensor = "zeros",
    batch_size: int = 64,
    seed: int = 0,
    blur_sigma: float = 5.0,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """φ_j = (1/S) Σ_orders [y(x with the features up to j kept) − y(x with those before j)],
    the rest at the baseline: an unbiased estimate of the Shapley values of the features
    (superpixels, grid cells or given labels, as feature-ablation's), exact in expectation,
    summing to y(x) − y(x′) for every order. `samples` orders per image (seeded alike for
    every image), M forwards each, `batch_size` at a time."""
    samples = positive_int("samples", samples, "shapley-sampling")
    batch_size = positive_int("batch_size", batch_size, "shapley-sampling")
    x = rec.inputs.detach()
    n = x.shape[0]
    mask = feature_mask(
        x, features, segments=segments, compactness=compactness, cell=cell,
        method="shapley-sampling",
    )  # fmt: skip
    filled = make_baseline(rec, x, baseline, seed, blur_sigma)
    k = counts(mask).tolist()
    orders = [permutations(m, samples, seed).to(x.device) for m in k]
    places = [torch.argsort(order, 1) for order in orders]  # place of each feature in each order
    steps = [torch.zeros(samples, m, dtype=torch.float64, device=x.device) for m in k]
    owners = torch.repeat_interleave(torch.arange(n), torch.tensor(k) * samples)
    starts = torch.cumsum(torch.tensor(k) * samples, 0) - torch.tensor(k) * samples
    per_forward = min(batch_size, len(owners))
    with scoring(rec, rows=per_forward, **fast_settings(x, per_forward)) as score:
        images = torch.arange(n, device=x.device)
        at_baseline = score(filled)[images, images].double()
        for chunk in chunks(len(owners), batch_size):  # image i: order s, step t in S x M_i
            image = owners[chunk]
            local = chunk - starts[image]
            order, step = local // torch.tensor(k)[image], local % torch.tensor(k)[image]
            keep = torch.stack(
                [
                    places[i][s][mask[i]] <= t
                    for i, s, t in zip(image.tolist(), order.tolist(), step.tolist(), strict=True)
                ]
            )
            on = image.to(x.device)
            batch = torch.where(keep[:, None], x[on], filled[on])
            y = score(batch)[torch.arange(len(chunk)), on].double()
            for j, (i, s, t) in enumerate(
                zip(image.tolist(), order.tolist(), step.tolist(), strict=True)
            ):
                steps[i][s, t] = y[j]
    total = accumulator(x)
    for i in range(n):
        before = torch.cat([at_baseline[i].expand(samples, 1), steps[i][:, :-1]], 1)
        gains = torch.zeros_like(steps[i]).scatter_(1, orders[i], steps[i] - before)
        values = (gains.mean(0)).to(total.dtype)
        total[i] = values[mask[i]][None].expand(x.shape[1], -1, -1)
    return total.to(x.dtype), {"features": k, "samples": samples}


register(
    MethodInfo(
        name="shapley-sampling",
        order=45,
        kind="pixel",
        sign="signed",
        summary="Shapley values of superpixels estimated from random orders of adding them.",
        formula="(1/S) Σ_π [y_c(x_{pre_π(j) ∪ j}) − y_c(x_{pre_π(j)})]",
        paper="Castro et al. 2009, doi:10.1016/j.cor.2008.04.004",
        cost=Cost(
            "1 forward + 1 forward per feature per sample order (in batches)",
            forwards=1,
            per="sample",
        ),
        compute=shapley_sampling,
        needs=Needs(baseline=True),
    )
)
