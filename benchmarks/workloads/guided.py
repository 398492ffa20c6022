"""Target 4: guided backprop, ResNet-50, batch 8: at least as fast as Captum GuidedBackprop.

Captum hooks ResNet-50's `nn.ReLU` modules (all its ReLUs are modules, reused three times per
block and in place; Captum handles both), so both compute the same method. Forward+backward
timings are shown for scale.
"""

from __future__ import annotations

from captum.attr import GuidedBackprop

import cnnvis

from ..common import (
    Context,
    Row,
    agreement_row,
    baseline_candidates,
    correlation,
    make_input,
    quiet,
    release_grads,
    speed_row,
    time_row,
    top1,
)
from . import register

BATCH = 8


@register("guided-resnet50", "guided backprop, ResNet-50, batch 8, vs Captum GuidedBackprop")
def guided_resnet50(ctx: Context) -> list[Row]:
    workload = "guided-resnet50"
    model = ctx.model("resnet50")
    x = make_input(BATCH, ctx.device)
    targets = top1(model, x)

    def run_cnnvis():
        return cnnvis.explain(model, x, "guided-backprop", target=targets).map

    def run_captum():
        with quiet():
            return GuidedBackprop(model).attribute(x, target=targets)

    candidates = {"cnnvis": run_cnnvis, "captum": run_captum}
    if not ctx.quick:  # for scale only
        candidates.update(baseline_candidates(ctx, model, x, targets))
    timings = ctx.measure(workload, candidates)
    release_grads(model)
    rows = [time_row(workload, timing) for name, timing in timings.items() if name != "cnnvis"]
    rows.append(speed_row(workload, timings, "cnnvis", "captum", "<=", 1.0))
    rows.append(agreement_row(workload, "cnnvis~captum", correlation(run_cnnvis(), run_captum())))
    return rows
