"""Target 5: peak memory of the VGG16 sweep: at most 1.3x that of one forward+backward.

Each measurement runs in a fresh Python process (`python -m benchmarks.workloads.memory KIND`),
so no allocator cache, probe cache or earlier workload can hide or add memory. In the child:

1. import torch, torchvision and cnnvis; build VGG16 (random init, eval); make the input; run one
   no-grad forward to pick the target class (so lazily loaded kernels are resident for all kinds);
2. `gc.collect()`, then the baseline B = current RSS (VmRSS);
3. reset the kernel's peak-RSS counter (write "5" to /proc/self/clear_refs), run KIND once;
4. the peak P = VmHWM (peak RSS since the reset). Reported: P - B, the memory the call needed on
   top of the loaded model.

Where the reset is not possible (not Linux), a thread samples RSS with psutil every 0.5 ms and its
maximum stands in for P (it can miss a short peak; the JSON says which method was used). On CUDA
the same steps use `torch.cuda.max_memory_allocated()` (after `reset_peak_memory_stats`) instead
of RSS. KIND: fb (forward + `.backward()`), fb-input (forward + input gradient only), sweep
(`cnnvis.sweep(model, x, "guided-grad-cam", layers="all")`).
"""

from __future__ import annotations

import statistics

from ..common import (
    Context,
    Row,
    Target,
    baseline_names,
    log,
    memory_child,
    memory_child_main,
    peak_memory,
)
from . import register

RATIO = 1.3
KINDS = ("fb", "fb-input", "sweep")
MB = 2**20


def child(kind: str, threads: int, device_name: str) -> dict[str, object]:
    import torch

    import cnnvis

    from ..common import build_model, forward_backward, forward_input_grad, make_input, top1

    torch.set_num_threads(threads)
    device = torch.device(device_name)
    model = build_model("vgg16", device)
    x = make_input(1, device)
    targets = top1(model, x)
    work = {
        "fb": lambda: forward_backward(model, x, targets),
        "fb-input": lambda: forward_input_grad(model, x, targets),
        "sweep": lambda: cnnvis.sweep(model, x, "guided-grad-cam", layers="all", target=targets),
    }[kind]
    return {"kind": kind, **peak_memory(work, device)}


@register("memory-vgg16", "peak RSS of the VGG16 sweep vs one forward+backward (fresh processes)")
def memory_vgg16(ctx: Context) -> list[Row]:
    workload = "memory-vgg16"
    runs = 1 if ctx.quick else 3
    kinds = [*baseline_names(ctx), "sweep"]
    samples: dict[str, list[dict]] = {kind: [] for kind in kinds}
    for _ in range(runs):  # interleaved, like the timings
        for kind in kinds:
            samples[kind].append(memory_child("benchmarks.workloads.memory", kind, ctx))
    ctx.extra[workload] = samples
    delta = {k: statistics.median(s["delta_bytes"] for s in v) / MB for k, v in samples.items()}
    method = samples["sweep"][0]["method"]
    for kind in kinds:
        log(f"  {workload:<22} {kind:<26} peak - base {delta[kind]:8.1f} MiB  ({method})")
    note = f"MiB over the loaded model, median of {runs} fresh process(es), {method}"
    rows = [
        Row(workload, f"{kind} (MiB)", None, delta[kind], note=note if kind == "fb" else "")
        for kind in kinds
    ]
    for base in baseline_names(ctx):
        gate = base == ctx.baseline
        rows.append(
            Row(
                workload,
                "sweep",
                None,
                delta["sweep"] / delta[base],
                Target(f"peak sweep/{base}", "<=", RATIO),
                gate,
                "" if gate else "info: other yardstick (see --baseline)",
            )
        )
    return rows


if __name__ == "__main__":
    memory_child_main(child, KINDS)
