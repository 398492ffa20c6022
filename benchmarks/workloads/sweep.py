"""Target 1: guided Grad-CAM at every layer of one 224x224 image, `cnnvis.sweep(..., "all")`.

Gated: the sweep at most 1.5x one forward+backward of the same model (VGG16, ResNet-50,
DenseNet-121), and on VGG16 at least 40x faster than the tutorial's per-layer loop
(`benchmarks/tutorial.py`; --quick runs it over 3 of the 31 layers and scales up, which
underestimates it). Informational (full run): the sweep on a model it has not seen (the layer
probe's cache cleared). Agreement: the sweep's maps against the loop's at the first, middle and
last layer — maps of a loop run without leaked hooks (the timed loop's first layer has none yet;
--quick checks first and last only).
"""

from __future__ import annotations

import cnnvis
from cnnvis import layers as cnnvis_layers

from ..common import (
    Context,
    Row,
    Target,
    agreement_row,
    baseline_candidates,
    baseline_names,
    correlation,
    log,
    make_input,
    quiet,
    ratio_rows,
    release_grads,
    time_row,
    top1,
)
from ..timing import time_once
from ..tutorial import ModuleReLUDenseNet, guided_grad_cam_loop
from . import register

METHOD = "guided-grad-cam"
SWEEP_RATIO = 1.5
LOOP_SPEEDUP = 40.0
QUICK_LOOP_LAYERS = 3


def run_sweep(ctx: Context, model_name: str, with_loop: bool) -> list[Row]:
    workload = f"sweep-{model_name}"
    model = ctx.model(model_name)
    x = make_input(1, ctx.device)
    targets = top1(model, x)
    result = cnnvis.sweep(model, x, METHOD, layers="all", target=targets)
    names = result.layers
    log(f"  {workload}: {len(names)} layers ({names[0]} ... {names[-1]})")

    def sweep():
        return cnnvis.sweep(model, x, METHOD, layers="all", target=targets)

    def sweep_cold():
        probes = getattr(cnnvis_layers, "_PROBES", {})  # cnnvis' per-model layer-probe cache
        probes.pop(model, None)  # as on a model never seen before: probe again
        return sweep()

    candidates = baseline_candidates(ctx, model, x, targets)
    candidates["cnnvis-sweep"] = sweep
    if not ctx.quick:
        candidates["cnnvis-sweep-cold"] = sweep_cold
    timings = ctx.measure(workload, candidates)
    release_grads(model)

    rows = [time_row(workload, timings[n]) for n in baseline_names(ctx)]
    rows += ratio_rows(workload, timings, "cnnvis-sweep", SWEEP_RATIO, ctx, "sweep")
    if "cnnvis-sweep-cold" in timings:
        note = "info: layer-probe cache cleared before each call"
        rows += ratio_rows(
            workload, timings, "cnnvis-sweep-cold", SWEEP_RATIO, ctx, "cold", note, gate=False
        )

    checked = sorted({0, len(names) - 1} | (set() if ctx.quick else {len(names) // 2}))
    references = {}
    if with_loop:
        loop_rows, loop_maps = _loop(ctx, workload, model, x, targets, result)
        rows += loop_rows
        references[names[0]] = loop_maps[names[0]]  # no hook has leaked before the first layer

    modules = dict(model.named_modules())
    remaining = [names[i] for i in checked if names[i] not in references]
    reference_model = ModuleReLUDenseNet(model) if model_name.startswith("densenet") else model
    with quiet():
        maps = guided_grad_cam_loop(
            reference_model, x, targets, [modules[n] for n in remaining], leak=False
        )
    references.update(zip(remaining, maps, strict=True))
    corr = min(correlation(result[n].map, ref) for n, ref in references.items())
    note = "vs the loop without leaked hooks at " + ", ".join(references)
    if reference_model is not model:
        note += " (final F.relu as a module for the loop's hooks)"
    rows.append(agreement_row(workload, "cnnvis~loop", corr, note))
    return rows


def _loop(ctx, workload, model, x, targets, result) -> tuple[list[Row], dict]:
    """Time the tutorial's loop (all layers, or 3 in --quick, scaled up) and compare its maps."""
    names = result.layers
    modules = dict(model.named_modules())
    if ctx.quick:
        step = (len(names) - 1) / (QUICK_LOOP_LAYERS - 1)
        chosen = [names[round(i * step)] for i in range(QUICK_LOOP_LAYERS)]
    else:
        chosen = names
    maps: list = []

    def loop():
        with quiet():
            maps[:] = guided_grad_cam_loop(model, x, targets, [modules[n] for n in chosen])

    seconds, _ = time_once(loop, ctx.device)
    estimate = seconds * len(names) / len(chosen)
    note = f"1 run over all {len(names)} layers"
    if len(chosen) < len(names):
        note = (
            f"1 run over {len(chosen)} of {len(names)} layers, x {len(names) / len(chosen):.2f}"
            " (fewer leaked hooks pile up: an underestimate)"
        )
    ctx.extra[f"{workload}/loop"] = {"seconds": seconds, "layers": chosen, "estimate_s": estimate}
    log(f"  {workload:<22} {'tutorial-loop':<26} {seconds:8.4f} s for {len(chosen)} layers")
    sweep_seconds = ctx.timings[workload]["cnnvis-sweep"].median
    by_layer = dict(zip(chosen, maps, strict=True))
    leaky = min(correlation(result[n].map, m) for n, m in by_layer.items())
    rows = [
        Row(workload, "tutorial-loop", estimate, note=note),
        Row(
            workload,
            "cnnvis-sweep",
            sweep_seconds,
            estimate / sweep_seconds,
            Target("loop/sweep", ">=", LOOP_SPEEDUP),
        ),
        agreement_row(
            workload,
            "cnnvis~loop-as-published",
            leaky,
            "info: its leaked guided hooks also guide later layers' Grad-CAM backward",
            gate=False,
        ),
    ]
    return rows, by_layer


@register("sweep-vgg16", "guided Grad-CAM at all 31 VGG16 feature layers vs fb and the loop")
def sweep_vgg16(ctx: Context) -> list[Row]:
    return run_sweep(ctx, "vgg16", with_loop=True)


@register("sweep-resnet50", "guided Grad-CAM at every ResNet-50 block (stem + 16) vs fb")
def sweep_resnet50(ctx: Context) -> list[Row]:
    return run_sweep(ctx, "resnet50", with_loop=False)


@register("sweep-densenet121", "guided Grad-CAM at every DenseNet-121 block vs fb")
def sweep_densenet121(ctx: Context) -> list[Row]:
    return run_sweep(ctx, "densenet121", with_loop=False)
