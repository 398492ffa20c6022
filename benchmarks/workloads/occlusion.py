"""Occlusion on ResNet-18, one 224x224 image: cnnvis against Captum `Occlusion`.

The same settings for both: a 32x32 window over all three channels, stride 16 (13 x 13 = 169
window positions), fill 0 (Captum's `baselines=0`), 32 occluded copies per forward
(`batch_size=32` / `perturbations_per_eval=32`). Gated: cnnvis / Captum <= 1.0 (wall clock;
process CPU seconds beside it, informational) and agreement of the maps (min per-image Pearson
r >= 0.999). Full runs only (each call is ~170 forwards).
"""

from __future__ import annotations

from captum.attr import Occlusion

import cnnvis

from ..common import (
    Context,
    Row,
    agreement_row,
    correlation,
    cpu_time_row,
    forward_no_grad,
    make_input,
    quiet,
    speed_row,
    time_row,
    top1,
)
from . import register

WINDOW = 32
STRIDE = 16
BATCH = 32


@register(
    "occlusion-resnet18",
    "Occlusion, ResNet-18, 1 image, window 32 stride 16, batch 32, vs Captum",
    quick=False,
)
def occlusion_resnet18(ctx: Context) -> list[Row]:
    workload = "occlusion-resnet18"
    model = ctx.model("resnet18")
    x = make_input(1, ctx.device)
    targets = top1(model, x)

    def run_cnnvis():
        return cnnvis.explain(
            model,
            x,
            "occlusion",
            target=targets,
            window=WINDOW,
            stride=STRIDE,
            fill=0.0,
            batch_size=BATCH,
        ).map

    def run_captum():
        with quiet():
            return Occlusion(model).attribute(
                x,
                sliding_window_shapes=(3, WINDOW, WINDOW),
                strides=(3, STRIDE, STRIDE),
                baselines=0.0,
                target=targets,
                perturbations_per_eval=BATCH,
            )

    candidates = {
        "cnnvis": run_cnnvis,
        "captum": run_captum,
        f"forward-no-grad x{BATCH}": lambda: forward_no_grad(
            model, x.expand(BATCH, -1, -1, -1).contiguous()
        ),
    }
    timings = ctx.measure(workload, candidates)
    rows = [time_row(workload, timings[n]) for n in candidates if n != "cnnvis"]
    rows += [
        speed_row(workload, timings, "cnnvis", "captum", "<=", 1.0),
        cpu_time_row(workload, timings, "cnnvis/captum", "<=", 1.0),
        agreement_row(workload, "cnnvis~captum", correlation(run_cnnvis(), run_captum())),
    ]
    return rows
