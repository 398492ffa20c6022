"""Target 2: five methods on one image from one recorded forward, `cnnvis.explain_many`.

gradient, guided-backprop, deconvnet, grad-cam and guided-grad-cam at the default layer (the
last with spatial output), one 224x224 image: at most 1.6x one forward+backward. Run on VGG16
(quick and full) and ResNet-50 (full). Agreement: each map against Captum's implementation of
the same method (Saliency(abs=False), GuidedBackprop, Deconvolution, LayerGradCam with ReLU at
layer resolution, GuidedGradCam with bilinear upsampling). In a full run Captum's five separate
calls are timed too (informational).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    GuidedGradCam,
    LayerGradCam,
    Saliency,
)
from torch import nn

import cnnvis

from ..common import (
    Context,
    Row,
    agreement_row,
    baseline_candidates,
    baseline_names,
    correlation,
    make_input,
    quiet,
    ratio_rows,
    release_grads,
    time_row,
    top1,
)
from . import register

METHODS = ("gradient", "guided-backprop", "deconvnet", "grad-cam", "guided-grad-cam")
RATIO = 1.6


def captum_maps(
    model: nn.Module, layer: nn.Module, x: torch.Tensor, targets: list[int]
) -> dict[str, Callable[[], torch.Tensor]]:
    """Captum's version of each method, as calls returning the map cnnvis' map is compared to."""
    return {
        "gradient": lambda: Saliency(model).attribute(x, target=targets, abs=False),
        "guided-backprop": lambda: GuidedBackprop(model).attribute(x, target=targets),
        "deconvnet": lambda: Deconvolution(model).attribute(x, target=targets),
        "grad-cam": lambda: LayerGradCam(model, layer).attribute(
            x, target=targets, relu_attributions=True
        ),
        "guided-grad-cam": lambda: GuidedGradCam(model, layer).attribute(
            x, target=targets, interpolate_mode="bilinear"
        ),
    }


def cnnvis_map(results: dict, method: str, layer: str) -> torch.Tensor:
    if method == "grad-cam":
        return results[(method, layer)].layer_map.clamp(min=0)
    key = (method, layer) if (method, layer) in results else (method, None)
    return results[key].map


def run_multi(ctx: Context, model_name: str) -> list[Row]:
    workload = f"multi-{model_name}"
    model = ctx.model(model_name)
    x = make_input(1, ctx.device)
    targets = top1(model, x)
    layer = cnnvis.default_layer(model)
    peers = captum_maps(model, dict(model.named_modules())[layer], x, targets)

    candidates = baseline_candidates(ctx, model, x, targets)
    candidates["cnnvis-5-methods"] = lambda: cnnvis.explain_many(model, x, METHODS, target=targets)
    if not ctx.quick:

        def captum_all():
            with quiet():
                return [peer() for peer in peers.values()]

        candidates["captum-5-calls"] = captum_all
    timings = ctx.measure(workload, candidates)
    release_grads(model)

    rows = [time_row(workload, timings[n]) for n in baseline_names(ctx)]
    rows += ratio_rows(
        workload, timings, "cnnvis-5-methods", RATIO, ctx, "cnnvis", f"default layer {layer}"
    )
    if "captum-5-calls" in timings:
        rows.append(time_row(workload, timings["captum-5-calls"], "info: five separate calls"))

    results = cnnvis.explain_many(model, x, METHODS, target=targets)
    with quiet():
        for method, peer in peers.items():
            corr = correlation(cnnvis_map(results, method, layer), peer())
            rows.append(agreement_row(workload, f"{method}~captum", corr))
    return rows


@register("multi-vgg16", "5 methods, one forward: VGG16, one image")
def multi_vgg16(ctx: Context) -> list[Row]:
    return run_multi(ctx, "vgg16")


@register("multi-resnet50", "5 methods, one forward: ResNet-50, one image", quick=False)
def multi_resnet50(ctx: Context) -> list[Row]:
    return run_multi(ctx, "resnet50")
