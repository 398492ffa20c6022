"""Activation maximization: the input that most excites a class logit, a channel or a neuron.

Erhan et al. 2009 and Simonyan et al. 2014 ascend the gradient of a unit's activation with
respect to the input; Olah et al. 2017 ("Feature Visualization", Distill) showed what makes the
result look like something: a decorrelated colour and 1/f Fourier parametrization (`param.py`)
and transformation robustness (`transform.py`). Optional total-variation and blur penalties
smooth further. Every step is

    x = image(θ);  s = score(model(normalize(T(x))));  θ ← Adam(θ, ∇θ [-s + tv·TV(x) + blur·B(x)])

with T a fresh random jitter/scale/rotation. The gradient is taken with `torch.autograd.grad`
with respect to θ alone, so the model's parameters never get a `.grad`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TargetError
from ..forwards import device_dtype
from ..model import LoadedModel, as_loaded
from ..progress import report
from ..targets import UnitTarget, select_logits
from .objective import (
    FeatureError,
    Forward,
    Target,
    TargetLike,
    common_layer,
    hooked_forward,
    parse_feature_target,
    resolve_classes,
    scores,
)
from .param import ImageParam
from .transform import Robustness, random_affine

log = logging.getLogger(__name__)

DEFAULT_STEPS = 128
DEFAULT_LR = 0.1
DEFAULT_DECAY = 1.25
GREY = 0.5


@dataclass
class FeatureVisualization:
    """Optimized images (N, 3, size, size) in [0, 1] on the CPU, one per target, with each
    target's score on its image (untransformed) and on a plain grey image, and the score of
    every step (steps, N) as measured on the transformed image."""

    images: torch.Tensor
    targets: list[Target]
    labels: list[str]
    scores: torch.Tensor
    grey_scores: torch.Tensor
    history: torch.Tensor
    steps: int
    size: int
    seed: int

    def __len__(self) -> int:
        return len(self.targets)


def maximize(
    model: nn.Module | LoadedModel,
    targets: TargetLike | Sequence[TargetLike],
    *,
    steps: int = DEFAULT_STEPS,
    size: int | None = None,
    seed: int = 0,
    lr: float = DEFAULT_LR,
    robustness: Robustness | None = None,
    tv: float = 0.0,
    blur: float = 0.0,
    fourier: bool = True,
    decorrelate: bool = True,
    decay_power: float = DEFAULT_DECAY,
    progress: bool | None = None,
    output: str | None = None,
) -> FeatureVisualization:
    """One image per target, all optimized together in one batch (see the module docstring).

    `targets`: class indices or names, "class:INDEX", "LAYER:CHANNEL[@max|@Y,X]" or
    `UnitTarget`s, all classes or all of one layer. `size`: default the model's input size
    (224 for the default model: 128 steps take about 7 s on one CPU core). Same seed, same
    targets, same device -> the same images. `progress`: a tqdm bar (default: when stderr is
    a terminal).
    """
    loaded = as_loaded(model)
    parsed = _parse(targets)
    size = loaded.preprocess.crop_size if size is None else size
    _check_budget(steps, size, lr)
    device, dtype = device_dtype(loaded.module)
    generator = torch.Generator().manual_seed(seed)
    image = ImageParam(
        len(parsed), size, generator, fourier=fourier, decorrelate=decorrelate,
        decay_power=decay_power, device=device,
        dtype=torch.float64 if dtype == torch.float64 else torch.float32,
    )  # fmt: skip
    with hooked_forward(loaded.module, common_layer(parsed)) as forward:
        grey = torch.full((len(parsed), 3, size, size), GREY, device=device, dtype=dtype)
        resolved, grey_scores = _prepare(loaded, forward, parsed, grey, output)

        def score(x: torch.Tensor) -> torch.Tensor:
            return scores(resolved, forward(loaded.preprocess.normalize(x.to(dtype))), output)

        step = _Ascent(image, score, lr, robustness or Robustness(), generator, tv, blur)
        bar = _progress_bar(steps, progress, _describe(loaded, resolved))
        history = _repeat(step, steps, bar)
        with torch.no_grad():
            final = image()
            final_scores = score(final)
    return FeatureVisualization(
        images=final.detach().float().cpu(),
        targets=resolved,
        labels=[label(loaded, t) for t in resolved],
        scores=final_scores.float().cpu(),
        grey_scores=grey_scores.float().cpu(),
        history=torch.stack(history) if history else torch.empty(0, len(resolved)),
        steps=steps,
        size=size,
        seed=seed,
    )


class _Ascent:
    """One step of gradient ascent on the image's parameters per call; returns the scores
    (N,) of the transformed images it saw."""

    def __init__(
        self,
        image: ImageParam,
        score: Callable[[torch.Tensor], torch.Tensor],
        lr: float,
        robustness: Robustness,
        generator: torch.Generator,
        tv: float,
        blur: float,
    ) -> None:
        self.image, self.score, self.robustness = image, score, robustness
        self.generator, self.tv, self.blur = generator, tv, blur
        self.optimizer = torch.optim.Adam([image.tensor], lr=lr)

    def __call__(self) -> torch.Tensor:
        x = self.image()
        score = self.score(random_affine(x, self.robustness, self.generator))
        loss = -score.sum()
        if self.tv:
            loss = loss + self.tv * total_variation(x)
        if self.blur:
            loss = loss + self.blur * blur_penalty(x)
        # the image's parameters alone: the model's parameters never get a .grad
        (self.image.tensor.grad,) = torch.autograd.grad(loss, [self.image.tensor])
        self.optimizer.step()
        return score.detach().float().cpu()


def visualize(
    model: nn.Module | LoadedModel,
    target: TargetLike,
    *,
    steps: int = DEFAULT_STEPS,
    size: int | None = None,
    seed: int = 0,
    **options: Any,
) -> torch.Tensor:
    """The image (3, size, size) in [0, 1] that maximizes one class logit, channel or neuron.

    `target`: 1, "goldfish", "class:1", "blocks.3:5" (channel mean), "blocks.3:5@4,4" (one
    neuron). More options as for `maximize` (lr, robustness, tv, blur, decay_power, ...).
    """
    return maximize(model, [target], steps=steps, size=size, seed=seed, **options).images[0]


def channel_grid(
    model: nn.Module | LoadedModel,
    layer: str,
    n: int = 16,
    *,
    channels: Sequence[int] | None = None,
    **options: Any,
) -> FeatureVisualization:
    """The first `n` channels of `layer` (or the given `channels`), one image each, optimized
    together as one batch. Draw them with `features.make_grid` or `features.grid_figure`."""
    chosen = list(range(n)) if channels is None else list(channels)
    targets = [UnitTarget(layer, c) for c in chosen]
    return maximize(model, targets, **options)


def measure(
    model: nn.Module | LoadedModel,
    targets: TargetLike | Sequence[TargetLike],
    images: torch.Tensor,
    *,
    output: str | None = None,
) -> torch.Tensor:
    """The targets' scores (N,) on [0, 1] images (N, 3, H, W), as `maximize` scores them (one
    target for all images, or one per image). No gradients; the model is left as it was."""
    loaded = as_loaded(model)
    parsed = _parse(targets)
    parsed = parsed * len(images) if len(parsed) == 1 else parsed
    if len(parsed) != len(images):
        raise TargetError(f"{len(parsed)} targets for {len(images)} images; give 1 or one each")
    layer = common_layer(parsed)
    device, dtype = device_dtype(loaded.module)
    with hooked_forward(loaded.module, layer) as forward, torch.no_grad():
        return _prepare(loaded, forward, parsed, images.to(device, dtype), output)[1].cpu()


def label(model: LoadedModel, target: Target) -> str:
    """'goldfish (1)' for a class; 'blocks.3:5' for a channel mean, 'blocks.3:5@max',
    'blocks.3:5@4,2' for the other unit targets."""
    if isinstance(target, UnitTarget):
        return f"{target.layer}:{target.channel}" if target.reduce == "sum" else str(target)
    return f"{model.class_name(target)} ({target})"


# ----------------------------------------------------------------------------- regularizers


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Σ over images of mean |x[y+1, x] - x[y, x]| + mean |x[y, x+1] - x[y, x]| (Mahendran &
    Vedaldi 2015): penalizes high-frequency noise."""
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    return (dy + dx).sum()


def blur_penalty(x: torch.Tensor) -> torch.Tensor:
    """Σ over images of mean (x - G * x)² with G a 3x3 Gaussian: the soft version of Yosinski
    et al. 2015's blurring between steps."""
    kernel = torch.tensor([1.0, 2.0, 1.0], device=x.device, dtype=x.dtype)
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    return (x - blurred).pow(2).mean(dim=(1, 2, 3)).sum()


# ----------------------------------------------------------------------------- helpers


def _prepare(
    model: LoadedModel,
    forward: Forward,
    parsed: list[int | str | UnitTarget],
    images: torch.Tensor,
    output: str | None,
) -> tuple[list[Target], torch.Tensor]:
    """Resolve class names, check every target on one no-grad forward of `images`, and turn
    on the early stop when the layer runs once per forward. Returns (targets, their scores)."""
    with torch.no_grad():
        value = forward(model.preprocess.normalize(images))
        if forward.layer is None:
            categories = model.categories
            resolved = resolve_classes(parsed, select_logits(value, output), categories)
        else:
            resolved = [p for p in parsed if isinstance(p, UnitTarget)]
            forward.stop_at_layer = forward.calls == 1
        return resolved, scores(resolved, value, output)


def _describe(model: LoadedModel, targets: list[Target]) -> str:
    first = label(model, targets[0])
    return first if len(targets) == 1 else f"{first} +{len(targets) - 1}"


def _repeat(step: Callable[[], torch.Tensor], steps: int, bar: Any) -> list[torch.Tensor]:
    """`steps` calls of `step`, ticking the progress bar (closed also on error)."""
    try:
        history = []
        for done in range(steps):
            history.append(step())
            if bar is not None:
                bar.update()
            report("features", done + 1, steps)
        return history
    finally:
        if bar is not None:
            bar.close()


def _parse(targets: TargetLike | Sequence[TargetLike]) -> list[int | str | UnitTarget]:
    specs = [targets] if isinstance(targets, str | int | UnitTarget) else list(targets)
    if not specs:
        raise TargetError("no target given: pass a class, 'LAYER:CHANNEL', or a list of them")
    return [parse_feature_target(spec) for spec in specs]


def _progress_bar(steps: int, progress: bool | None, desc: str) -> Any:
    """A tqdm bar on stderr, or None (`progress` None: only when stderr is a terminal)."""
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress or steps < 2:
        return None
    from tqdm import tqdm

    return tqdm(total=steps, desc=desc, file=sys.stderr, leave=False, unit="step")


def _check_budget(steps: int, size: int, lr: float) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise FeatureError(f"steps must be an int >= 0, got {steps!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise FeatureError(f"size must be an int >= 16 pixels, got {size!r}")
    if not lr > 0:
        raise FeatureError(f"lr must be > 0, got {lr!r}")
