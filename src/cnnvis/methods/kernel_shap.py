"""KernelSHAP and LIME on superpixels: a weighted linear model of the score over random
subsets of features kept (the others set to the baseline), fitted per image (Lundberg & Lee
2017; Ribeiro et al. 2016), with Captum's samplers, kernels and least-squares fit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..capture import Recording
from ..errors import MethodError
from ..forwards import fast_settings
from ._batching import chunks, positive_int, scoring
from ._superpixels import counts, feature_mask
from .facts import Cost, MethodInfo, Needs
from .integrated_gradients import make_baseline
from .registry import register

INF_WEIGHT = 1e6  # Captum's weight of the all-kept and none-kept samples


def kernel_shap_draws(features: int, samples: int, seed: int) -> torch.Tensor:
    """(samples, features) 0/1 rows as Captum's KernelShap draws them from a generator seeded
    `seed`: all kept, none kept, then k ~ p(k) ∝ (M − 1) / (k (M − k)) and the k features with
    the largest of M normal draws."""
    generator = torch.Generator().manual_seed(seed)
    m = features
    k = torch.arange(m, dtype=torch.float)
    probs = torch.tensor(m - 1) / (k * (m - k))
    probs[0] = 0.0
    rows = [torch.ones(m, dtype=torch.long), torch.zeros(m, dtype=torch.long)]
    while len(rows) < samples:
        if m < 2:  # nothing between all and none
            rows.append(rows[len(rows) % 2])
            continue
        chosen = int(torch.multinomial(probs / probs.sum(), 1, True, generator=generator))
        values = torch.randn(1, m, generator=generator)
        threshold = torch.kthvalue(values, m - chosen).values.item()
        rows.append((values[0] > threshold).long())
    return torch.stack(rows[:samples])


def lime_draws(features: int, samples: int, seed: int) -> torch.Tensor:
    """(samples, features) rows of independent fair coin flips (Captum's Lime default)."""
    generator = torch.Generator().manual_seed(seed)
    rows = [
        torch.bernoulli(torch.full((1, features), 0.5), generator=generator)[0]
        for _ in range(samples)
    ]
    return torch.stack(rows).long()


def kernel_shap_weights(draws: torch.Tensor, x: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    kept = draws.sum(1)
    edge = (kept == 0) | (kept == draws.shape[1])
    return torch.where(edge, INF_WEIGHT, 1.0).double()


def weighted_fit(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The coefficients of the least-squares fit y ≈ z·β + b with sample weights w (the
    intercept b dropped): data centred on the weighted means and scaled by √w, then the
    minimum-norm solution, as scikit-learn's LinearRegression(sample_weight=w)."""
    z, y, w = z.double().cpu(), y.double().cpu(), w.double().cpu()
    share = w / w.sum()
    zc, yc = z - share @ z, y - share @ y
    root = w.sqrt()[:, None]
    solution: torch.Tensor = torch.linalg.lstsq(zc * root, yc[:, None] * root, driver="gelsd")[0]
    return solution[:, 0]


def surrogate(
    rec: Recording,
    method: str,
    draw: Callable[[int, int, int], torch.Tensor],
    weigh: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    params: dict[str, Any],
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Per image: draws of features kept, the scores of those inputs (batched), the weights,
    and the weighted linear fit; the map carries each feature's coefficient on its pixels."""
    samples = positive_int("samples", params["samples"], method)
    batch_size = positive_int("batch_size", params["batch_size"], method)
    x = rec.inputs.detach()
    n = x.shape[0]
    mask = feature_mask(
        x, params["features"], segments=params["segments"],
        compactness=params["compactness"], cell=params["cell"], method=method,
    )  # fmt: skip
    filled = make_baseline(rec, x, params["baseline"], params["seed"], params["blur_sigma"])
    draws = [draw(int(k), samples, params["seed"]).to(x.device) for k in counts(mask)]
    scores = torch.zeros(n, samples, dtype=torch.float64, device=x.device)
    weights = torch.zeros(n, samples, dtype=torch.float64)
    per_forward = min(batch_size, n * samples)
    with scoring(rec, rows=per_forward, **fast_settings(x, per_forward)) as score:
        for chunk in chunks(n * samples, batch_size):  # row r: sample r % S of image r // S
            rows = chunk.to(x.device)
            image, sample = rows // samples, rows % samples
            keep = torch.stack([draws[i][s][mask[i]] for i, s in zip(image, sample, strict=True)])
            batch = torch.where(keep[:, None].bool(), x[image], filled[image])
            scores[image, sample] = score(batch)[torch.arange(len(rows)), image].double()
            for j, (i, s) in enumerate(zip(image.tolist(), sample.tolist(), strict=True)):
                weights[i, s] = weigh(draws[i][s][None], x[i], batch[j])[0]
    attribution = torch.zeros_like(x)
    for i in range(n):
        coefficients = weighted_fit(draws[i].double(), scores[i], weights[i]).to(x)
        attribution[i] = coefficients[mask[i]][None].expand(x.shape[1], -1, -1)
    return attribution, {"features": counts(mask).tolist(), "samples": samples}


def _options(**given: Any) -> dict[str, Any]:
    return given


def kernel_shap(
    rec: Recording,
    layer: str | None = None,
    *,
    samples: int = 200,
    features: str | torch.Tensor = "slic",
    segments: int = 50,
    compactness: float = 10.0,
    cell: int = 16,
    baseline: str | torch.Tensor = "zeros",
    batch_size: int = 64,
    seed: int = 0,
    blur_sigma: float = 5.0,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """φ = argmin Σ_z π(z) (y(x_z) − φ₀ − φ·z)², z ∈ {0,1}^M the superpixels kept, π the
    Shapley kernel (Lundberg & Lee 2017), as Captum's `KernelShap`: z drawn with
    p(|z| = k) ∝ (M − 1) / (k (M − k)) so that every draw weighs 1 (the all and none
    samples first, weight 1e6). `features` / `baseline` as feature-ablation's; `samples`
    forwards per image, `batch_size` at a time, seeded by `seed` (each image alike)."""
    params = _options(samples=samples, features=features, segments=segments,
                      compactness=compactness, cell=cell, baseline=baseline,
                      batch_size=batch_size, seed=seed, blur_sigma=blur_sigma)  # fmt: skip
    return surrogate(rec, "kernel-shap", kernel_shap_draws, kernel_shap_weights, params)


def lime(
    rec: Recording,
    layer: str | None = None,
    *,
    samples: int = 200,
    kernel_width: float = 1.0,
    features: str | torch.Tensor = "slic",
    segments: int = 50,
    compactness: float = 10.0,
    cell: int = 16,
    baseline: str | torch.Tensor = "zeros",
    batch_size: int = 64,
    seed: int = 0,
    blur_sigma: float = 5.0,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """φ = argmin Σ_z π(z) (y(x_z) − φ₀ − φ·z)², z ~ fair coin flips per superpixel, π =
    exp(−d(x, x_z)² / (2 w²)) with d the cosine distance of the inputs (Ribeiro et al. 2016;
    Captum's `Lime` sampler and kernel, `kernel_width` w). The surrogate is fitted by weighted
    least squares (Captum's default is a Lasso with α = 0.01, which shrinks the small
    coefficients to zero). Other parameters as kernel-shap's."""
    if not kernel_width > 0:
        raise MethodError(f"lime: kernel_width must be > 0, got {kernel_width!r}")

    def weigh(draws: torch.Tensor, x: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        cosine = torch.nn.functional.cosine_similarity(
            x.flatten().float(), batch.flatten().float(), 0
        )
        distance = 1 - cosine
        return torch.exp(-(distance**2) / (2 * kernel_width**2)).double().reshape(1).cpu()

    params = _options(samples=samples, features=features, segments=segments,
                      compactness=compactness, cell=cell, baseline=baseline,
                      batch_size=batch_size, seed=seed, blur_sigma=blur_sigma)  # fmt: skip
    return surrogate(rec, "lime", lime_draws, weigh, params)


for _name, _order, _compute, _summary, _formula, _paper in (
    (
        "kernel-shap", 43, kernel_shap,
        "Shapley values of superpixels by a Shapley-kernel-weighted linear fit.",
        "argmin_φ Σ_z π_SHAP(z) (y_c(x_z) − φ₀ − φ·z)²",
        "Lundberg & Lee 2017, arXiv:1705.07874",
    ),
    (
        "lime", 44, lime,
        "A locally weighted linear model of the score over superpixels kept or removed.",
        "argmin_φ Σ_z exp(−d(x, x_z)²/2w²) (y_c(x_z) − φ₀ − φ·z)²",
        "Ribeiro et al. 2016, arXiv:1602.04938",
    ),
):  # fmt: skip
    register(
        MethodInfo(
            name=_name,
            order=_order,
            kind="pixel",
            sign="signed",
            summary=_summary,
            formula=_formula,
            paper=_paper,
            cost=Cost("1 forward per sample (in batches)", forwards=0, per="sample"),
            compute=_compute,
            needs=Needs(baseline=True),
        )
    )
