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

import argparse
import gc
import json
import statistics
import threading
from pathlib import Path

from ..common import Context, Row, Target, baseline_names, log, memory_child
from . import register

RATIO = 1.3
KINDS = ("fb", "fb-input", "sweep")
MB = 2**20


def _status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


class _Sampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.0005):
            self.peak = max(self.peak, self.process.memory_info().rss)


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
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = work()
        torch.cuda.synchronize(device)
        peak, method = torch.cuda.max_memory_allocated(device), "cuda max_memory_allocated"
    else:
        base = _status_kb("VmRSS") * 1024 if _status_kb("VmRSS") else None
        sampler = None
        if base is not None and _reset_peak():
            method = "VmHWM after clear_refs"
        else:
            sampler = _Sampler()
            base = sampler.peak
            sampler.start()
            method = "psutil sampler (0.5 ms)"
        result = work()
        if sampler is None:
            peak = _status_kb("VmHWM") * 1024
        else:
            sampler.stop.set()
            sampler.join()
            peak = sampler.peak
    del result
    return {
        "kind": kind,
        "base_bytes": base,
        "peak_bytes": peak,
        "delta_bytes": peak - base,
        "method": method,
    }


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="one memory measurement (a child process)")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    print(json.dumps(child(args.kind, args.threads, args.device)))


if __name__ == "__main__":
    main()
