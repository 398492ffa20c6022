"""Integrated Gradients on ResNet-18, 1 image: cnnvis against Captum `IntegratedGradients`.

`integrated-gradients-resnet18`: 50 steps, 50-point Gauss-Legendre (both libraries' default
rule), the zero baseline (Captum's default; "zeros" in cnnvis), the path points in chunks of 25
(`batch_size=25` / `internal_batch_size=25`: two forward+backward passes of 25 rows each). Gated:
cnnvis / Captum <= 1.0 (wall clock; process CPU seconds beside it, informational) and agreement
of the attribution maps (min per-image Pearson r >= 0.999); the completeness error cnnvis reports
is shown as a note.

`integrated-gradients-memory`: peak memory is bounded by the batch-size knob, not by the steps.
Each measurement is a fresh `python -m benchmarks.workloads.integrated_gradients KIND` process
(as `memory.py` measures: baseline RSS after building the model, peak counter reset, VmHWM after
one call) on a 112x112 image (Captum's 256-row batch of a 224x224 image would need ~10 GiB):
cnnvis at 32 and 256 steps with `batch_size=16`, Captum at 32 and 256 steps without
`internal_batch_size` (everything in one batch). Gated: cnnvis' peak at 256 steps / at 32 steps
<= 1.5; Captum's ratio is shown beside it (informational).
"""

from __future__ import annotations

import statistics

import torch
from captum.attr import IntegratedGradients

import cnnvis

from ..common import (
    Context,
    Row,
    Target,
    agreement_row,
    correlation,
    cpu_time_row,
    log,
    make_input,
    memory_child,
    memory_child_main,
    quiet,
    speed_row,
    time_row,
    top1,
)
from . import register

STEPS = 50
BATCH = 25
MEMORY_SIZE = 112
MEMORY_BATCH = 16
MEMORY_KINDS = ("cnnvis-32", "cnnvis-256", "captum-32", "captum-256")
MEMORY_RATIO = 1.5
MB = 2**20


def run_cnnvis(model, x, targets, steps: int, batch_size: int):
    return cnnvis.explain(
        model,
        x,
        "integrated-gradients",
        target=targets,
        baseline="zeros",
        steps=steps,
        quadrature="gausslegendre",
        batch_size=batch_size,
    )


def run_captum(model, x, targets, steps: int, batch_size: int | None):
    with quiet():
        return IntegratedGradients(model).attribute(
            x,
            baselines=torch.zeros_like(x),
            target=targets,
            n_steps=steps,
            method="gausslegendre",
            internal_batch_size=batch_size,
        )


@register(
    "integrated-gradients-resnet18",
    "Integrated Gradients, ResNet-18, 1 image, 50 steps in chunks of 25, vs Captum",
    quick=False,
)
def integrated_gradients_resnet18(ctx: Context) -> list[Row]:
    workload = "integrated-gradients-resnet18"
    model = ctx.model("resnet18")
    x = make_input(1, ctx.device)
    targets = top1(model, x)
    candidates = {
        "cnnvis": lambda: run_cnnvis(model, x, targets, STEPS, BATCH),
        "captum": lambda: run_captum(model, x, targets, STEPS, BATCH),
    }
    timings = ctx.measure(workload, candidates)
    ours = run_cnnvis(model, x, targets, STEPS, BATCH)
    theirs = run_captum(model, x, targets, STEPS, BATCH)
    errors = [
        e / abs(d) if d else float("nan")
        for e, d in zip(
            ours.params["completeness_error"], ours.params["score_difference"], strict=True
        )
    ]
    return [
        time_row(workload, timings["captum"]),
        speed_row(workload, timings, "cnnvis", "captum", "<=", 1.0),
        cpu_time_row(workload, timings, "cnnvis/captum", "<=", 1.0),
        agreement_row(
            workload,
            "cnnvis~captum",
            correlation(ours.map, theirs),
            f"completeness error {100 * max(errors):.2g}% of |f(x) - f(x')|",
        ),
    ]


# --- memory: fresh processes ---------------------------------------------------------------------


def child(kind: str, threads: int, device_name: str) -> dict[str, object]:
    """One measurement (in a fresh process): peak memory of one IG call of `kind`."""
    from ..common import build_model, peak_memory

    torch.set_num_threads(threads)
    device = torch.device(device_name)
    model = build_model("resnet18", device)
    x = torch.randn(1, 3, MEMORY_SIZE, MEMORY_SIZE, generator=torch.Generator().manual_seed(0)).to(
        device
    )
    targets = top1(model, x)
    library, steps = kind.split("-")
    if library == "cnnvis":
        work = lambda: run_cnnvis(model, x, targets, int(steps), MEMORY_BATCH)  # noqa: E731
    else:
        work = lambda: run_captum(model, x, targets, int(steps), None)  # noqa: E731
    return {"kind": kind, **peak_memory(work, device)}


@register(
    "integrated-gradients-memory",
    "peak memory of IG at 256 vs 32 steps, batch_size 16, vs Captum unbatched (fresh processes)",
    quick=False,
)
def integrated_gradients_memory(ctx: Context) -> list[Row]:
    workload = "integrated-gradients-memory"
    runs = 1 if ctx.quick else 3
    samples: dict[str, list[dict]] = {kind: [] for kind in MEMORY_KINDS}
    for _ in range(runs):  # interleaved, like the timings
        for kind in MEMORY_KINDS:
            samples[kind].append(
                memory_child("benchmarks.workloads.integrated_gradients", kind, ctx)
            )
    ctx.extra[workload] = samples
    delta = {k: statistics.median(s["delta_bytes"] for s in v) / MB for k, v in samples.items()}
    method = samples["cnnvis-256"][0]["method"]
    for kind in MEMORY_KINDS:
        log(f"  {workload:<22} {kind:<26} peak - base {delta[kind]:8.1f} MiB  ({method})")
    note = (
        f"MiB over the loaded model, {MEMORY_SIZE}x{MEMORY_SIZE} image, median of {runs} "
        f"fresh process(es), {method}"
    )
    rows = [
        Row(workload, f"{kind} (MiB)", None, delta[kind], note=note if i == 0 else "")
        for i, kind in enumerate(MEMORY_KINDS)
    ]
    rows.append(
        Row(
            workload,
            "cnnvis",
            None,
            delta["cnnvis-256"] / delta["cnnvis-32"],
            Target("peak 256 steps/32 steps, batch_size 16", "<=", MEMORY_RATIO),
        )
    )
    rows.append(
        Row(
            workload,
            "captum",
            None,
            delta["captum-256"] / delta["captum-32"],
            Target("peak 256 steps/32 steps, unbatched", "<=", MEMORY_RATIO),
            gate=False,
            note="info: Captum without internal_batch_size grows with the steps",
        )
    )
    return rows


if __name__ == "__main__":
    memory_child_main(child, MEMORY_KINDS)
