"""Faithfulness: does the model's score follow the map when pixels are removed or added?

- Deletion / insertion (RISE, Petsiuk et al. 2018, arXiv:1806.07421): the softmax probability
  of the explained class as pixels are replaced, most relevant first, by a substrate (deletion,
  default the dataset mean, which is 0 in the model's normalized input space), or put back onto
  a blurred copy (insertion, Gaussian kernel 11, sigma 5); `steps` equal steps of H*W/steps
  pixels; the area under the curve by the trapezoid rule. Deletion: lower is better;
  insertion: higher.
- Average Drop / Increase in Confidence (Chattopadhyay et al. 2018, arXiv:1710.11063): Y the
  probability on the image, O on the image weighted by the map (min-max to [0, 1], blended
  towards the deletion substrate: s + w (x - s), i.e. w * x for the mean substrate);
  drop = max(0, Y - O) / Y (lower is better), increase = 1[O > Y] (higher is better), both
  averaged over images.
- ROAD (Rong et al. 2022, arXiv:2202.00449): the probability after removing a fraction of the
  pixels (10%, 20%, ..., 90%) by noisy linear imputation, most relevant first (MoRF, lower is
  better) and least relevant first (LeRF, higher is better); the mean over the fractions.

Each metric is planned as `Job`s (see `scoring`) so that all the perturbed inputs of many maps go
through the model together, in full batches. The original image and the two fully substituted
images are scored once per image, in the same batches, and shared by all maps (`Anchors`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torchvision.transforms.v2 import functional as TF

from ..model import LoadedModel, Preprocess
from .errors import EvaluationError
from .imputation import linear_imputation
from .maps import pixel_counts, ranks
from .scoring import Job, Scorer

SUBSTRATES: tuple[str, ...] = ("mean", "black", "blur")
BLUR_KERNEL, BLUR_SIGMA = 11, 5.0
ROAD_FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
ROAD_NOISE = 0.01
SubstrateSpec = str | float | torch.Tensor


@dataclass
class Curve:
    """A score curve of one map on one image: `scores` at `fractions` of the pixels moved, and
    its summary `value` (AUC for deletion / insertion, the mean for ROAD)."""

    image: str
    map: str
    metric: str
    fractions: torch.Tensor
    scores: torch.Tensor
    value: float

    def __repr__(self) -> str:
        return (
            f"Curve({self.metric} of {self.map} on {self.image}: {len(self.scores)} points, "
            f"value {self.value:.4f})"
        )


@dataclass
class Plan:
    """The inputs a metric needs (`jobs`) and how their scores become results (`finish`)."""

    jobs: list[Job]
    finish: Callable[[list[torch.Tensor]], dict[str, Any]]


def blur(
    x: torch.Tensor, kernel_size: int = BLUR_KERNEL, sigma: float = BLUR_SIGMA
) -> torch.Tensor:
    """Gaussian blur of (N, C, H, W) model input (reflected border), RISE's insertion start.
    On inputs smaller than the kernel, the kernel shrinks to the largest odd size that fits."""
    side = min(int(x.shape[-2]), int(x.shape[-1]))
    kernel_size = min(kernel_size, 2 * side - 1)
    kernel_size -= 1 - kernel_size % 2
    return TF.gaussian_blur(x, [kernel_size, kernel_size], [sigma, sigma])


def substrate(x: torch.Tensor, spec: SubstrateSpec, preprocess: Preprocess) -> torch.Tensor:
    """What removed pixels become, in model-input space, shaped like `x` (N, C, H, W).

    "mean": the dataset mean (0 in the normalized input space); "black": the normalized black
    image; "blur": `blur(x)`; a number: that constant input value; a tensor: itself, broadcast.
    """
    if isinstance(spec, torch.Tensor):
        return spec.to(x).expand_as(x).clone()
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        return torch.full_like(x, float(spec))
    if spec == "mean":
        return torch.zeros_like(x)
    if spec == "black":
        return preprocess.normalize(torch.zeros_like(x)) if x.shape[1] == 3 else torch.zeros_like(x)
    if spec == "blur":
        return blur(x)
    raise EvaluationError(
        f"unknown substrate {spec!r}; use one of {', '.join(SUBSTRATES)}, a number or a tensor"
    )


def auc(scores: torch.Tensor, fractions: torch.Tensor) -> float:
    """The area under a curve by the trapezoid rule: Σ_k (f_k+1 - f_k)(y_k + y_k+1) / 2."""
    return float(torch.trapezoid(scores.double(), fractions.double()))


@dataclass
class Anchors:
    """Scores shared by every map of one image: the original, and each full substitution.
    Filled when `anchor_plan` finishes, which `execute` does before it finishes the plans
    after it, so the anchors' three inputs share the batches of everything else."""

    original: float = float("nan")
    deleted: float = float("nan")  # every pixel replaced by the deletion substrate
    inserted_start: float = float("nan")  # the insertion substrate alone (the blurred image)


def anchor_plan(
    x: torch.Tensor, deleted: torch.Tensor, start: torch.Tensor, target: int, anchors: Anchors
) -> Plan:
    """Three rows (the image, the deletion substrate, the insertion substrate) whose scores
    fill `anchors`; put it first in the list given to `execute`."""
    rows = torch.stack([x, deleted, start])

    def finish(scores: list[torch.Tensor]) -> dict[str, Any]:
        anchors.original, anchors.deleted, anchors.inserted_start = scores[0].tolist()
        return {}

    return Plan([Job(3, lambda a, b: rows[a:b], target)], finish)


def _moved(rank: torch.Tensor, counts: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W): true for the pixels among the first counts[b] of the order."""
    return (rank[None, :] < counts[:, None]).view(-1, 1, *shape)


def deletion_insertion_plan(
    image: str,
    name: str,
    x: torch.Tensor,
    rank: torch.Tensor,
    target: int,
    anchors: Anchors,
    *,
    deleted: torch.Tensor,
    start: torch.Tensor,
    steps: int,
    metrics: tuple[str, ...] = ("deletion", "insertion"),
) -> Plan:
    """Deletion and/or insertion curves of one map (`rank`, most relevant first) on one input
    `x` (C, H, W): `steps - 1` inputs each, the end points taken from `anchors`."""
    shape = (int(x.shape[-2]), int(x.shape[-1]))
    fractions = torch.arange(steps + 1, dtype=torch.float64) / steps
    counts = pixel_counts(fractions, shape[0] * shape[1]).to(x.device)
    rank = rank.to(x.device)
    inner = steps - 1

    def rows(first: torch.Tensor, then: torch.Tensor) -> Callable[[int, int], torch.Tensor]:
        def make(a: int, b: int) -> torch.Tensor:
            moved = _moved(rank, counts[1 + a : 1 + b], shape)
            return torch.where(moved, then, first)

        return make

    jobs, ends = [], []
    if "deletion" in metrics:
        jobs.append(Job(inner, rows(x, deleted), target))
        ends.append(("deletion", "original", "deleted"))
    if "insertion" in metrics:
        jobs.append(Job(inner, rows(start, x), target))
        ends.append(("insertion", "inserted_start", "original"))

    def finish(scores: list[torch.Tensor]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for (metric, head, tail), inside in zip(ends, scores, strict=True):
            first, last = getattr(anchors, head), getattr(anchors, tail)
            curve = torch.cat([_scalar(first), inside, _scalar(last)])
            out[metric] = Curve(image, name, metric, fractions, curve, auc(curve, fractions))
        return out

    return Plan(jobs, finish)


def _scalar(value: float) -> torch.Tensor:
    return torch.tensor([value], dtype=torch.float64)


def average_drop_plan(
    x: torch.Tensor,
    weights: torch.Tensor,
    target: int,
    anchors: Anchors,
    *,
    deleted: torch.Tensor,
) -> Plan:
    """Average Drop and Increase in Confidence of one map: one input, s + w (x - s)."""
    w = weights.to(x)
    row = (deleted + w * (x - deleted))[None]

    def finish(scores: list[torch.Tensor]) -> dict[str, Any]:
        y, o = anchors.original, float(scores[0][0])
        drop = max(0.0, y - o) / y if y > 0 else 0.0
        return {"average-drop": drop, "increase": float(o > y)}

    return Plan([Job(1, lambda a, b: row[a:b], target)], finish)


def road_plan(
    image: str,
    name: str,
    x: torch.Tensor,
    rank: torch.Tensor,
    target: int,
    *,
    fractions: tuple[float, ...] = ROAD_FRACTIONS,
    noise: float = ROAD_NOISE,
    seed: int = 0,
    iterations: int = 32,
    metrics: tuple[str, ...] = ("road-morf", "road-lerf"),
) -> Plan:
    """ROAD of one map: for each order (MoRF, LeRF) and fraction, the input with that fraction
    of pixels imputed. Images are imputed lazily, a batch at a time; row i's noise comes from
    its own seed, so the numbers do not depend on the batch size."""
    shape = (int(x.shape[-2]), int(x.shape[-1]))
    pixels = shape[0] * shape[1]
    f = torch.tensor(fractions, dtype=torch.float64)
    counts = pixel_counts(f, pixels).to(x.device)
    rank = rank.to(x.device)

    def rows(order: str, offset: int) -> Callable[[int, int], torch.Tensor]:
        def make(a: int, b: int) -> torch.Tensor:
            n = counts[a:b]
            if order == "road-morf":
                removed = _moved(rank, n, shape)
            else:
                removed = (rank[None, :] >= pixels - n[:, None]).view(-1, 1, *shape)
            clean = linear_imputation(
                x[None].expand(b - a, -1, -1, -1), removed, iterations=iterations
            )
            if noise <= 0:
                return clean
            jitter = torch.stack(
                [_noise(x.shape, _row_seed(seed, offset + i)) for i in range(a, b)]
            )
            jitter = jitter.to(x)
            return torch.where(removed, clean + noise * jitter, clean)

        return make

    chosen = [m for m in ("road-morf", "road-lerf") if m in metrics]
    jobs = [Job(len(fractions), rows(m, k * len(fractions)), target) for k, m in enumerate(chosen)]

    def finish(scores: list[torch.Tensor]) -> dict[str, Any]:
        return {
            metric: Curve(image, name, metric, f, s, float(s.mean()))
            for metric, s in zip(chosen, scores, strict=True)
        }

    return Plan(jobs, finish)


def _noise(shape: torch.Size, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _row_seed(seed: int, row: int) -> int:
    return (seed * 1_000_003 + row * 7_919 + 17) % (2**63)


def execute(scorer: Scorer, plans: list[Plan]) -> list[dict[str, Any]]:
    """Run every plan's jobs in one stream of batches, then finish each plan."""
    jobs = [job for plan in plans for job in plan.jobs]
    scores = scorer.run(jobs)
    results, at = [], 0
    for plan in plans:
        results.append(plan.finish(scores[at : at + len(plan.jobs)]))
        at += len(plan.jobs)
    return results


def deletion_insertion(
    model: LoadedModel,
    x: torch.Tensor,
    relevance2d: torch.Tensor,
    target: int,
    *,
    steps: int = 100,
    substrate_spec: SubstrateSpec = "mean",
    insertion_substrate: SubstrateSpec = "blur",
    batch_size: int = 32,
    seed: int = 0,
    output: str | None = None,
    metrics: tuple[str, ...] = ("deletion", "insertion"),
) -> dict[str, Curve]:
    """Deletion and insertion curves of one (H, W) map for one model input `x` (C, H, W) or
    (1, C, H, W): 2 * (steps - 1) + 3 forwards, in batches of `batch_size`."""
    x = (x[0] if x.dim() == 4 else x).to(model.device)
    scorer = Scorer(model, batch_size=batch_size, output=output)
    deleted = substrate(x[None], substrate_spec, model.preprocess)[0]
    start = substrate(x[None], insertion_substrate, model.preprocess)[0]
    anchors = Anchors()
    first = anchor_plan(x, deleted, start, target, anchors)
    rank = ranks(relevance2d, torch.Generator().manual_seed(seed))
    plan = deletion_insertion_plan(
        "image",
        "map",
        x,
        rank,
        target,
        anchors,
        deleted=deleted,
        start=start,
        steps=steps,
        metrics=metrics,
    )
    return execute(scorer, [first, plan])[1]
