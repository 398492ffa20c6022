"""DeepLIFT (rescale rule) and DeepLiftShap: differences from a reference, propagated with
Δy/Δx multipliers (Shrikumar et al. 2017; Lundberg & Lee 2017), Captum's `DeepLift` and
`DeepLiftShap`, on paired batches [x; x′] of `batch_size` pairs."""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..capture import Recording
from ..errors import Hint, MethodError
from ..forwards import fast_settings
from ..model import is_scripted
from ._batching import accumulator, chunks, input_gradients, positive_int
from ._rescale import EPS, RescaleMode, RescaleState
from .facts import Cost, MethodInfo, Needs
from .gradient_shap import DEFAULT_BASELINES, references
from .integrated_gradients import completeness, make_baseline
from .registry import register

log = logging.getLogger(__name__)


def rescaled(
    rec: Recording, refs: torch.Tensor, batch_size: int, eps: float, method: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepLIFT of every image against each of its references `refs` (N, M, C, H, W),
    averaged over the M references: (the map (N, C, H, W), the mean score of the references
    (N,)). Runs `batch_size` (image, reference) pairs per forward, as one batch [x; x′]."""
    if is_scripted(rec.model):
        raise MethodError(
            f"{method} cannot run on a TorchScript model: its rescale rule must see the "
            "model's nonlinearities, and TorchScript runs outside Python; explain the original "
            "(non-scripted) nn.Module",
            hint=Hint("methods", "torchscript"),
        )
    x = rec.inputs.detach()
    n, m = refs.shape[:2]
    same = (refs == x[:, None]).flatten(2).all(2)
    if bool(same.any()):
        bad, ref = (int(i) for i in same.nonzero()[0])
        raise MethodError(
            f"{method}: image {bad} equals its baseline {ref}, so every difference is zero "
            "and DeepLIFT explains nothing (its map would be all zero); choose another "
            "baseline (e.g. 'blurred', 'noise' or a tensor)"
        )
    if not eps >= 0:
        raise MethodError(f"{method}: eps must be >= 0, got {eps!r}")
    state = RescaleState(eps=float(eps))
    settings = fast_settings(x, 2 * min(batch_size, n * m), fold=False)
    with input_gradients(rec, **settings) as gradient:  # gradients on, inference mode off
        total, at_refs = accumulator(x), torch.zeros(n, dtype=torch.float64, device=x.device)
        for rows in chunks(n * m, batch_size):  # row r: reference r % m of image r // m
            image, which = (rows // m).to(x.device), (rows % m).to(x.device)
            start = refs[image, which]
            with RescaleMode(state):
                grad, y = gradient(torch.cat([x[image], start]), rec.target_rows(image.repeat(2)))
            b = len(rows)
            total.index_add_(0, image, (grad[:b] * (x[image] - start)).to(total.dtype))
            at_refs.index_add_(0, image, y[b:].to(torch.float64))
    if not state.calls:
        log.info(
            "%s: the model has no nonlinearity DeepLIFT knows; the map is gradient x Δ", method
        )
    return (total / m).to(x.dtype), at_refs / m


def deeplift(
    rec: Recording,
    layer: str | None = None,
    *,
    baseline: str | torch.Tensor = "black",
    eps: float = EPS,
    batch_size: int = 32,
    seed: int = 0,
    blur_sigma: float = 5.0,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """(x − x′) ⊙ m, m: the input gradient with every nonlinearity's derivative replaced by
    Δy/Δx between the input and the reference (Shrikumar et al. 2017, the rescale rule).

    `baseline`: the reference x′, a name from integrated-gradients ("black", "zeros" (Captum's
    default), "blurred", "noise") or a tensor broadcastable to the input. Where a nonlinearity's
    input equals the reference's (|Δx| < `eps`) its plain derivative is used, as Captum does.
    Σ attr = y(x) − y(x′) exactly on ReLU / max-pool networks (completeness). Runs on the
    batch [x; x′] with `_rescale.RescaleMode` (every ReLU-like call, module or functional, in
    place or not, and max pooling); the model is not changed. Returns the map and, per image,
    the score difference y(x) − y(x′) and the completeness error.
    """
    batch_size = positive_int("batch_size", batch_size, "deeplift")
    x = rec.inputs.detach()
    refs = make_baseline(rec, x, baseline, seed, blur_sigma)[:, None]
    attribution, at_refs = rescaled(rec, refs, batch_size, eps, "deeplift")
    difference, error = completeness(rec, attribution, at_refs)
    info: dict[str, Any] = {"baseline": baseline if isinstance(baseline, str) else "tensor"}
    return attribution, {**info, "score_difference": difference, "completeness_error": error}


def deeplift_shap(
    rec: Recording,
    layer: str | None = None,
    *,
    baselines: str | torch.Tensor = DEFAULT_BASELINES,
    eps: float = EPS,
    batch_size: int = 32,
    seed: int = 0,
    blur_sigma: float = 5.0,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """(1/M) Σ_j DeepLIFT(x; x′_j): DeepLIFT averaged over a distribution of M baselines
    (Lundberg & Lee 2017, "Deep SHAP"; Captum's `DeepLiftShap`).

    `baselines`: names from integrated-gradients, comma-separated (default black, blurred and
    a seeded noise picture), or a tensor of M model inputs (M, C, H, W) shared by every image
    (for instance images of the dataset). Σ attr = y(x) − mean_j y(x′_j) on ReLU networks.
    Returns the map and, per image, that score difference and the completeness error.
    """
    batch_size = positive_int("batch_size", batch_size, "deeplift-shap")
    x = rec.inputs.detach()
    refs = references(rec, x, baselines, seed, blur_sigma)
    attribution, at_refs = rescaled(rec, refs, batch_size, eps, "deeplift-shap")
    difference, error = completeness(rec, attribution, at_refs)
    info: dict[str, Any] = {"baselines": baselines if isinstance(baselines, str) else "tensor"}
    return attribution, {**info, "score_difference": difference, "completeness_error": error}


register(
    MethodInfo(
        name="deeplift",
        order=18,
        kind="pixel",
        sign="signed",
        summary="DeepLIFT: the difference from a baseline propagated with Δy/Δx multipliers "
        "(rescale rule).",
        formula="(x−x′) ⊙ ∂ᴰᴸy_c/∂x, every nonlinearity's f′ replaced by Δf/Δx",
        paper="Shrikumar et al. 2017, arXiv:1704.02685",
        cost=Cost("1 forward + 1 backward of the input and its baseline", forwards=2, backwards=1),
        compute=deeplift,
        scripted=False,  # the rescale rule needs the calls of an nn.Module
        needs=Needs(baseline=True),
    )
)
register(
    MethodInfo(
        name="deeplift-shap",
        order=19,
        kind="pixel",
        sign="signed",
        summary="DeepLIFT averaged over a distribution of baselines (Deep SHAP).",
        formula="(1/M) Σ_j (x−x′_j) ⊙ ∂ᴰᴸy_c/∂x |_{x′_j}",
        paper="Lundberg & Lee 2017, arXiv:1705.07874",
        cost=Cost(
            "1 forward + 1 backward of the input and each baseline (in batches)",
            forwards=2,
            backwards=1,
        ),
        compute=deeplift_shap,
        scripted=False,
        needs=Needs(baseline=True),
    )
)
