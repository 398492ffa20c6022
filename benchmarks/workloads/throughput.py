"""Target 6: explain 64 images (Grad-CAM at layer4 + guided backprop), ResNet-50, batches of 8.

Throughput (images/s) of `cnnvis.explain_many(model, batch, ["grad-cam", "guided-backprop"])`
over all batches against plain forward+backward over the same batches: at least 85%. --quick
uses 16 images (2 batches) and says so. Agreement: the first batch's maps against Captum
(GuidedBackprop; LayerGradCam with ReLU at layer resolution).
"""

from __future__ import annotations

from captum.attr import GuidedBackprop, LayerGradCam

import cnnvis

from ..common import (
    Context,
    Row,
    Target,
    agreement_row,
    baseline_names,
    correlation,
    forward_backward,
    forward_input_grad,
    make_input,
    quiet,
    release_grads,
    time_row,
    top1,
)
from ..timing import time_once
from . import register

METHODS = ("grad-cam", "guided-backprop")
LAYER = "layer4"
BATCH = 8
IMAGES = 64
QUICK_IMAGES = 16
SHARE = 0.85


@register("throughput-resnet50", "Grad-CAM + guided backprop over 64 images, batches of 8")
def throughput_resnet50(ctx: Context) -> list[Row]:
    workload = "throughput-resnet50"
    model = ctx.model("resnet50")
    images = QUICK_IMAGES if ctx.quick else IMAGES
    x = make_input(images, ctx.device, seed=1)
    targets = top1(model, x)
    batches = [(x[i : i + BATCH], targets[i : i + BATCH]) for i in range(0, images, BATCH)]

    def explain_all():
        return [
            cnnvis.explain_many(model, xb, METHODS, layers=[LAYER], target=tb) for xb, tb in batches
        ]

    every = {
        "fb": lambda: [forward_backward(model, xb, tb) for xb, tb in batches],
        "fb-input": lambda: [forward_input_grad(model, xb, tb) for xb, tb in batches],
    }
    bases = baseline_names(ctx)
    candidates = {name: every[name] for name in bases}
    candidates["cnnvis"] = explain_all
    xb, tb = batches[0]  # warm up on one batch only, the loops below are long
    for warm in (
        lambda: forward_backward(model, xb, tb),
        lambda: cnnvis.explain_many(model, xb, METHODS, layers=[LAYER], target=tb),
    ):
        time_once(warm, ctx.device)
    timings = ctx.measure(workload, candidates, warmup=0)
    release_grads(model)
    t = {name: timing.median for name, timing in timings.items()}
    note = f"{images} images, batch {BATCH}" + (" (--quick)" if ctx.quick else "")
    rows = [time_row(workload, timings[n], f"{images / t[n]:.2f} images/s") for n in bases]
    for base in bases:
        gate = base == ctx.baseline
        rows.append(
            Row(
                workload,
                "cnnvis",
                t["cnnvis"],
                t[base] / t["cnnvis"],
                Target(f"throughput cnnvis/{base}", ">=", SHARE),
                gate,
                f"{note}: {images / t['cnnvis']:.2f} images/s"
                if gate
                else "info: other yardstick (see --baseline)",
            )
        )

    xb, tb = batches[0]
    ours = cnnvis.explain_many(model, xb, METHODS, layers=[LAYER], target=tb)
    with quiet():
        guided = GuidedBackprop(model).attribute(xb, target=tb)
        cam = LayerGradCam(model, dict(model.named_modules())[LAYER]).attribute(
            xb, target=tb, relu_attributions=True
        )
    rows.append(
        agreement_row(
            workload,
            "guided~captum",
            correlation(ours[("guided-backprop", None)].map, guided),
            "first batch",
        )
    )
    rows.append(
        agreement_row(
            workload,
            "grad-cam~captum",
            correlation(ours[("grad-cam", LAYER)].layer_map.clamp(min=0), cam),
            "first batch, ReLU'd at layer resolution",
        )
    )
    return rows
