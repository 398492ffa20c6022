"""Issue 6's speed target: deletion + insertion (RISE protocol, 100 steps) of one map on one
ResNet-50 input, against 200 plain forward passes at the same batch size (32).

`cnnvis.evaluate.deletion_insertion` runs 2 x 99 perturbed inputs plus 3 shared end points (the
image, the fully deleted image, the blurred start): 201 forwards under inference mode, in full
batches, each batch built on demand from one sort of the map (masks by rank comparison, one op)
and substrates computed once. The yardstick is 200 forwards of already-made inputs under
`torch.inference_mode()` in batches of 32 (6 x 32 + 8), i.e. the forwards alone.

Gated: cnnvis / forwards <= 1.2 (wall clock; the same ratio of process CPU seconds beside it,
informational). Agreement: cnnvis' two curves against a straightforward reference loop (argsort
the map; for step k build the image with the first round(k H W / 100) pixels replaced, one
image at a time; score in batches), min Pearson r >= 0.999 over the two curves, and the largest
AUC difference relative to the AUC <= 1e-4. Full runs only (each candidate is hundreds of
ResNet-50 forwards).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.transforms.v2 import functional as TF

from cnnvis.evaluate import deletion_insertion, smooth_random
from cnnvis.model import as_loaded

from ..common import (
    Context,
    Row,
    Target,
    agreement_row,
    correlation,
    cpu_time_row,
    make_input,
    time_row,
    top1,
)
from . import register

STEPS = 100
BATCH = 32
FORWARDS = 2 * STEPS
TARGET_RATIO = 1.2
AUC_TOLERANCE = 1e-4


def smooth_map(size: int, seed: int = 0) -> torch.Tensor:
    """(size, size): the ranks of a 7x7 random map upsampled bilinearly (the shape of a CAM),
    as float32 integers 0..size²-1: the same order, and no two pixels tie in any dtype, so
    that cnnvis and the reference remove pixels in exactly one order."""
    g = torch.Generator().manual_seed(seed)
    base = smooth_random((size, size), 7, g).flatten()
    values = torch.empty(size * size)
    values[torch.argsort(base, stable=True)] = torch.arange(size * size, dtype=torch.float32)
    return values.view(size, size)


def reference_curves(
    model: nn.Module, x: torch.Tensor, relevance: torch.Tensor, target: int, steps: int, batch: int
) -> dict[str, torch.Tensor]:
    """Deletion (to 0, the dataset mean of normalized input) and insertion (onto a Gaussian
    blur, kernel 11, sigma 5) written out directly: p(target) at steps + 1 points."""
    _, c, h, w = x.shape
    order = torch.argsort(relevance.flatten().to(x.device), descending=True)
    image = x[0].reshape(c, h * w)
    blurred = TF.gaussian_blur(x, [11, 11], [5.0, 5.0])[0].reshape(c, h * w)
    curves = {}
    for metric in ("deletion", "insertion"):
        inputs = []
        for k in range(steps + 1):
            chosen = order[: round(k * h * w / steps)]
            if metric == "deletion":
                row = image.clone()
                row[:, chosen] = 0.0
            else:
                row = blurred.clone()
                row[:, chosen] = image[:, chosen]
            inputs.append(row.reshape(c, h, w))
        stacked = torch.stack(inputs)
        with torch.inference_mode():
            scores = [
                model(stacked[i : i + batch]).float().softmax(dim=1)[:, target]
                for i in range(0, len(stacked), batch)
            ]
        curves[metric] = torch.cat(scores).double().cpu()
    return curves


@register(
    "evaluate-deletion-insertion-resnet50",
    "deletion + insertion, 100 steps, ResNet-50, 1 image, batch 32, vs 200 plain forwards",
    quick=False,
)
def deletion_insertion_resnet50(ctx: Context) -> list[Row]:
    workload = "evaluate-deletion-insertion-resnet50"
    model = ctx.model("resnet50")
    lm = as_loaded(model)
    x = make_input(1, ctx.device)
    target = top1(model, x)[0]
    relevance = smooth_map(int(x.shape[-1]))
    plain = make_input(BATCH, ctx.device, seed=1)
    sizes = [min(BATCH, FORWARDS - i) for i in range(0, FORWARDS, BATCH)]

    def run_cnnvis():
        return deletion_insertion(lm, x, relevance, target, steps=STEPS, batch_size=BATCH)

    def run_forwards():
        with torch.inference_mode():
            for n in sizes:
                model(plain[:n])

    yardstick = f"forward x{FORWARDS}"
    timings = ctx.measure(workload, {"cnnvis": run_cnnvis, yardstick: run_forwards})
    ratio = timings["cnnvis"].median / timings[yardstick].median
    rows = [
        time_row(workload, timings[yardstick], f"inference mode, batches of {BATCH}"),
        Row(
            workload,
            "cnnvis",
            timings["cnnvis"].median,
            ratio,
            Target(f"cnnvis/{yardstick}", "<=", TARGET_RATIO),
            note=f"{2 * (STEPS - 1) + 3} forwards in batches of {BATCH}",
        ),
        cpu_time_row(workload, timings, f"cnnvis/{yardstick}", "<=", TARGET_RATIO),
    ]

    ours = run_cnnvis()
    ref = reference_curves(model, x, relevance, target, STEPS, BATCH)
    metrics = ("deletion", "insertion")
    a = torch.stack([ours[m].scores for m in metrics])
    b = torch.stack([ref[m] for m in metrics])
    rows.append(agreement_row(workload, "cnnvis~reference curves", correlation(a, b)))
    fractions = ours["deletion"].fractions
    gaps = []
    for m in metrics:
        theirs = float(torch.trapezoid(ref[m], fractions))
        gaps.append(abs(ours[m].value - theirs) / max(abs(theirs), 1e-12))
    aucs = ", ".join(f"{m} {ours[m].value:.4f}" for m in metrics)
    rows.append(
        Row(
            workload,
            "agree cnnvis~reference AUC",
            None,
            max(gaps),
            Target("max |dAUC|/AUC", "<=", AUC_TOLERANCE),
            note=f"AUC {aucs}",
        )
    )
    return rows
