"""LRP EpsilonPlusFlat on ResNet-50, batch 8: cnnvis against Zennit's `Gradient` attributor.

`lrp-resnet50`: both with the EpsilonPlusFlat composite and BatchNorms merged (Zennit: its
`ResNetCanonizer`; cnnvis finds its canonizers by itself, on a copy of the model), the output
relevance the target logit (one-hot times the logit, as cnnvis starts from). Gated: cnnvis /
Zennit <= 1.0 and cnnvis <= 1.6x one forward + backward (the issue's targets); agreement of the
maps (min per-image Pearson r >= 0.999).
"""

from __future__ import annotations

import torch
from zennit.attribution import Gradient
from zennit.composites import EpsilonPlusFlat
from zennit.torchvision import ResNetCanonizer

import cnnvis

from ..common import (
    Context,
    Row,
    agreement_row,
    baseline_candidates,
    correlation,
    make_input,
    ratio_rows,
    release_grads,
    speed_row,
    time_row,
    top1,
)
from . import register

BATCH = 8


def run_zennit(model: torch.nn.Module, x: torch.Tensor, targets: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = model(x)
    rows = torch.arange(len(targets))
    seed = torch.zeros_like(logits)
    seed[rows, targets] = logits[rows, targets]
    composite = EpsilonPlusFlat(canonizers=[ResNetCanonizer()])
    with Gradient(model=model, composite=composite) as attributor:
        _, relevance = attributor(x, seed)
    return relevance


@register("lrp-resnet50", "LRP EpsilonPlusFlat, ResNet-50, batch 8, vs Zennit", quick=False)
def lrp_resnet50(ctx: Context) -> list[Row]:
    workload = "lrp-resnet50"
    model = ctx.model("resnet50")
    x = make_input(BATCH, ctx.device)
    targets = top1(model, x)
    candidates = {
        "cnnvis": lambda: cnnvis.explain(model, x, "lrp", target=targets),
        "zennit": lambda: run_zennit(model, x, targets),
        **baseline_candidates(ctx, model, x, targets),
    }
    timings = ctx.measure(workload, candidates)
    release_grads(model)
    ours = cnnvis.explain(model, x, "lrp", target=targets)
    theirs = run_zennit(model, x, targets)
    rows = [time_row(workload, timings[n]) for n in candidates if n != "cnnvis"]
    rows.append(speed_row(workload, timings, "cnnvis", "zennit", "<=", 1.0))
    rows += ratio_rows(workload, timings, "cnnvis", 1.6, ctx)
    rows.append(agreement_row(workload, "cnnvis~zennit", correlation(ours.map, theirs)))
    return rows
