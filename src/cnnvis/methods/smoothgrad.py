"""SmoothGrad: any pixel method averaged over noisy copies of the input (a wrapper, as Captum's
NoiseTunnel), computed `batch_size` noisy copies at a time."""

from __future__ import annotations

from typing import Any

import torch

from ..capture import Recording
from ..errors import MethodError
from ._batching import accumulator, choice, chunks, positive_int
from .facts import Cost, MethodInfo, Needs, RawMap
from .registry import get_method, register

BASES = ("gradient", "guided-backprop", "deconvnet", "gradient-x-input", "integrated-gradients")
VARIANTS = ("smoothgrad", "smoothgrad-sq", "vargrad")


def unit_noise(x: torch.Tensor, samples: int, seed: int) -> torch.Tensor:
    """Seeded standard normal noise (samples, C, H, W), shared by the images of the batch (so a
    batch gives exactly the per-image results); for one image it is the draw of Captum's
    NoiseTunnel after `torch.manual_seed(seed)`."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((samples, *x.shape[1:]), generator=generator, dtype=x.dtype).to(x.device)


def smoothgrad(
    rec: Recording,
    layer: str | None = None,
    *,
    base: str = "gradient",
    samples: int = 50,
    noise_level: float = 0.15,
    variant: str = "smoothgrad",
    seed: int = 0,
    batch_size: int = 32,
    **base_params: Any,
) -> torch.Tensor:
    """mean_i M(x + ε_i), ε_i ~ N(0, σ²), σ = noise_level · (x_max - x_min) (Smilkov et al.
    2017); "smoothgrad-sq" averages M² (Hooker et al. 2019), "vargrad" is E[M²] - E[M]²
    (Adebayo et al. 2018).

    `base` is the wrapped pixel method (M computed on the noisy input, e.g. (x + ε) ⊙ ∇ for
    gradient-x-input); other keyword arguments go to it (e.g. steps=16 for IG). At most
    `batch_size` noisy copies (or IG path points) go through the model at once.
    """
    info = get_method(choice("base", base, BASES, "smoothgrad"))
    samples = positive_int("samples", samples, "smoothgrad")
    batch_size = positive_int("batch_size", batch_size, "smoothgrad")
    variant = choice("variant", variant, VARIANTS, "smoothgrad")
    if not noise_level >= 0:
        raise MethodError(f"smoothgrad: noise_level must be >= 0, got {noise_level!r}")
    if info.name == "integrated-gradients":  # its path points, too, at most batch_size a pass
        base_params.setdefault("batch_size", batch_size)
    x = rec.inputs.detach()
    rules = any(r != "plain" for r in info.input_rules)
    if noise_level == 0:  # every copy is x itself: the base map from one pass, exactly
        sub = rec if rec.state is not None or not rules else rec.rerecord(x, rec.target, rules=True)
        maps = base_map(info.compute(sub, None, **base_params))
        if variant == "vargrad":
            return torch.zeros_like(maps)
        return maps if variant == "smoothgrad" else maps * maps
    n = x.shape[0]
    z = unit_noise(x, samples, seed)
    sigma = noise_level * (x.flatten(1).amax(1) - x.flatten(1).amin(1))  # per image
    total, total_sq = accumulator(x), accumulator(x)
    for rows in chunks(samples * n, batch_size):  # row r: sample r // n of image r % n
        image, sample = (rows % n).to(x.device), (rows // n).to(x.device)
        noisy = x[image] + sigma[image].view(-1, 1, 1, 1) * z[sample]
        sub = rec.rerecord(noisy, rec.target_rows(image), rules=rules)
        maps = base_map(info.compute(sub, None, **base_params)).to(total.dtype)
        total.index_add_(0, image, maps)
        if variant != "smoothgrad":
            total_sq.index_add_(0, image, maps * maps)
    mean, mean_sq = total / samples, total_sq / samples
    result = {"smoothgrad": mean, "smoothgrad-sq": mean_sq, "vargrad": mean_sq - mean * mean}
    return result[variant].to(x.dtype)


def base_map(out: RawMap) -> torch.Tensor:
    """The map of a method's result (integrated-gradients also returns diagnostics)."""
    return (out[0] if isinstance(out, tuple) else out).detach()


register(
    MethodInfo(
        name="smoothgrad",
        order=15,
        kind="pixel",
        summary="A pixel method (default: gradient) averaged over noisy copies of the input.",
        formula="1/n Σ_i M(x + ε_i), ε_i ~ N(0, σ²)",
        paper="Smilkov et al. 2017, arXiv:1706.03825",
        cost=Cost("1 forward + samples × the base method's passes (in batches)", per="sample"),
        compute=smoothgrad,
        needs=Needs(base_methods=BASES),
    )
)
