"""What every workload shares: the run context, result rows, models, inputs, baselines, agreement.

Baselines (all on the model as the user has it: eval mode, parameters requiring grad):

- `forward_backward` ("fb"): one plain forward + backward, `score.backward()` as a training step
  or the tutorial's scripts do it: gradients reach the input and every parameter. This is the
  pass the figures in shared/REFERENCE.md call "one plain forward+backward" (VGG16 1.81 s;
  ResNet-50 3.1-3.5x its no-grad forward, which only a backward into the weights costs).
- `forward_input_grad` ("fb-input"): forward + `autograd.grad(score, input)`: the least work any
  input-gradient map needs (no weight gradients). Reported beside "fb" as the stricter yardstick.
- `forward_autograd`: the forward alone, with autograd recording the graph.
- `forward_no_grad`: the forward under `torch.no_grad()`.
"""

from __future__ import annotations

import gc
import json
import math
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from .timing import Timing, measure

SEED = 0


@dataclass
class Target:
    """`value op threshold`, e.g. cnnvis/fb <= 1.5; `formula` names what the value is."""

    formula: str
    op: str  # "<=" or ">="
    threshold: float

    def check(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return value <= self.threshold if self.op == "<=" else value >= self.threshold

    def __str__(self) -> str:
        return f"{self.formula} {self.op} {self.threshold:g}"


@dataclass
class Row:
    """One line of the results table. `gate=False` rows are informational: shown, not enforced."""

    workload: str
    candidate: str
    seconds: float | None = None
    value: float | None = None
    target: Target | None = None
    gate: bool = True
    note: str = ""

    @property
    def passed(self) -> bool | None:
        if self.target is None or self.value is None:
            return None
        return self.target.check(self.value)

    def as_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "candidate": self.candidate,
            "median_s": self.seconds,
            "value": self.value,
            "target": str(self.target) if self.target else None,
            "passed": self.passed,
            "gate": self.gate,
            "note": self.note,
        }


@dataclass
class Context:
    """Options of the run plus caches shared between workloads."""

    quick: bool
    repeats: int
    device: torch.device
    threads: int
    baseline: str = "fb"  # the forward+backward that gates the "x one forward+backward" targets
    timings: dict[str, dict[str, Timing]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    _models: dict[str, nn.Module] = field(default_factory=dict)

    def model(self, name: str) -> nn.Module:
        """A random-init torchvision model (seeded, eval mode, on the device), built once."""
        if name not in self._models:
            self._models[name] = build_model(name, self.device)
        return self._models[name]

    def measure(
        self,
        workload: str,
        candidates: dict[str, Callable[[], object]],
        repeats: int | None = None,
        warmup: int = 1,
    ) -> dict[str, Timing]:
        """Time candidates interleaved (see `timing.measure`); log and keep every sample."""
        timings = measure(
            candidates, repeats=repeats or self.repeats, device=self.device, warmup=warmup
        )
        self.timings.setdefault(workload, {}).update(timings)
        for t in timings.values():
            log(f"  {workload:<22} {t.name:<26} median {t.median:8.4f} s  spread {t.spread:5.1%}")
        return timings


def log(message: str) -> None:
    print(message, flush=True)


def build_model(name: str, device: torch.device) -> nn.Module:
    torch.manual_seed(SEED)
    model = getattr(torchvision.models, name)(weights=None)
    return model.eval().to(device)


def make_input(batch: int, device: torch.device, seed: int = SEED) -> torch.Tensor:
    """A seeded (batch, 3, 224, 224) standard-normal tensor, i.e. already-normalized input."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 224, 224, generator=gen).to(device)


def top1(model: nn.Module, x: torch.Tensor) -> list[int]:
    with torch.no_grad():
        return model(x).argmax(dim=1).tolist()


def _scores(output: torch.Tensor, targets: Sequence[int]) -> torch.Tensor:
    index = torch.as_tensor(list(targets), device=output.device)[:, None]
    return output.gather(1, index).sum()


def forward_backward(model: nn.Module, x: torch.Tensor, targets: Sequence[int]) -> torch.Tensor:
    """One plain forward + `.backward()`: gradients at the input and at every parameter.

    The parameter gradients are dropped again before returning (as a training loop's
    `zero_grad(set_to_none=True)` would), so the candidate timed next finds the process as
    every other candidate does: ResNet-50's 100 MB of leftover `.grad` changed where glibc's heap
    top lands and made the next call return and re-fault its memory (~86k minor page faults per
    guided-backprop call, +30% time; Captum's call right after it did not fault).
    """
    model.zero_grad(set_to_none=True)
    xx = x.detach().requires_grad_(True)
    _scores(model(xx), targets).backward()
    model.zero_grad(set_to_none=True)
    return xx.grad


def forward_input_grad(model: nn.Module, x: torch.Tensor, targets: Sequence[int]) -> torch.Tensor:
    """Forward + the gradient at the input only (`autograd.grad`, no weight gradients)."""
    xx = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(_scores(model(xx), targets), xx)
    return grad


def forward_autograd(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The forward with autograd recording (parameters require grad), graph then dropped."""
    with torch.enable_grad():
        return model(x).detach()


def forward_no_grad(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


BASELINES = ("fb", "fb-input")


def baseline_names(ctx: Context) -> tuple[str, ...]:
    """The forward+backward yardsticks timed in this run: both in a full run; in --quick only
    the gating one (the other is informational and costs a pass per repeat)."""
    return (ctx.baseline,) if ctx.quick else BASELINES


def baseline_candidates(
    ctx: Context, model: nn.Module, x: torch.Tensor, targets: Sequence[int]
) -> dict[str, Callable[[], object]]:
    """The yardsticks of `baseline_names` as timing candidates (see the module docstring)."""
    every = {
        "fb": lambda: forward_backward(model, x, targets),
        "fb-input": lambda: forward_input_grad(model, x, targets),
    }
    return {name: every[name] for name in baseline_names(ctx)}


def release_grads(model: nn.Module) -> None:
    """Drop parameter gradients left by `.backward()`-based candidates (memory only)."""
    model.zero_grad(set_to_none=True)


def ratio_rows(
    workload: str,
    timings: dict[str, Timing],
    candidate: str,
    threshold: float,
    ctx: Context,
    what: str = "cnnvis",
    note: str = "",
    gate: bool = True,
) -> list[Row]:
    """`candidate / baseline <= threshold` for each yardstick timed; only `ctx.baseline` gates."""
    rows = []
    for base in baseline_names(ctx):
        gating = gate and base == ctx.baseline
        value = timings[candidate].median / timings[base].median
        target = Target(f"{what}/{base}", "<=", threshold)
        text = note if base == ctx.baseline else "info: the other yardstick (see --baseline)"
        rows.append(
            Row(workload, candidate, timings[candidate].median, value, target, gating, text)
        )
    return rows


def speed_row(
    workload: str,
    timings: dict[str, Timing],
    numerator: str,
    denominator: str,
    op: str,
    threshold: float,
    candidate: str = "cnnvis",
    note: str = "",
) -> Row:
    """A gated `numerator/denominator op threshold` row on median times, shown on `candidate`."""
    value = timings[numerator].median / timings[denominator].median
    target = Target(f"{numerator}/{denominator}", op, threshold)
    return Row(workload, candidate, timings[candidate].median, value, target, note=note)


def cpu_time_row(
    workload: str, timings: dict[str, Timing], ratio_of: str, op: str, threshold: float
) -> Row:
    """The informational twin of a speed target on process CPU seconds (far less sensitive to
    other processes on a shared machine): `ratio_of` is "A/B" over candidates, where A or B
    may be "min(C,D)" for the faster of several (e.g. "min(torchcam,grad-cam)/cnnvis")."""

    def cpu(names: str) -> float:
        names = names.removeprefix("min(").removesuffix(")")
        return min(timings[name].cpu_median for name in names.split(","))

    numerator, denominator = ratio_of.split("/")
    return Row(
        workload,
        "cnnvis (cpu time)",
        timings["cnnvis"].cpu_median,
        cpu(numerator) / cpu(denominator),
        Target(f"{ratio_of}, cpu s", op, threshold),
        gate=False,
        note="info: medians of process CPU seconds",
    )


def time_row(workload: str, timing: Timing, note: str = "") -> Row:
    return Row(workload, timing.name, timing.median, note=note)


# --- agreement ----------------------------------------------------------------------------------


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """The smallest per-image Pearson correlation between two batches of maps (float64).

    Maps are flattened per image; a pair that is constant in both is counted as agreeing (1.0)
    when equal up to a scale, and a pair constant in only one gives NaN (a failure).
    """
    a = torch.as_tensor(a).detach().to("cpu", torch.float64).reshape(a.shape[0], -1)
    b = torch.as_tensor(b).detach().to("cpu", torch.float64).reshape(b.shape[0], -1)
    if a.shape != b.shape:
        raise ValueError(f"maps to compare differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    values = []
    for u, v in zip(a, b, strict=True):
        u, v = u - u.mean(), v - v.mean()
        nu, nv = u.norm(), v.norm()
        if nu == 0 and nv == 0:
            values.append(1.0)
        elif nu == 0 or nv == 0:
            values.append(float("nan"))
        else:
            values.append(float((u @ v) / (nu * nv)))
    return min(values, key=lambda c: -math.inf if math.isnan(c) else c)


AGREEMENT = 0.999


def agreement_row(workload: str, what: str, corr: float, note: str = "", gate: bool = True) -> Row:
    return Row(workload, f"agree {what}", None, corr, Target("min r", ">=", AGREEMENT), gate, note)


@contextmanager
def quiet() -> Iterator[None]:
    """Silence the peers' warnings (deprecated hooks, 'hooks will be removed', ...)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# --- peak memory of one call (in a fresh process) ------------------------------------------------


def _status_kib(key: str) -> int | None:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM), None where there is none."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


class _RssSampler(threading.Thread):
    """Samples RSS with psutil every 0.5 ms (where VmHWM cannot be reset); can miss a short
    peak, so the result says which method was used."""

    def __init__(self):
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.0005):
            self.peak = max(self.peak, self.process.memory_info().rss)


def peak_memory(work: Callable[[], object], device: torch.device) -> dict[str, Any]:
    """Run `work` once and return the memory it needed over what was resident before:
    {"base_bytes", "peak_bytes", "delta_bytes", "method"}. On CPU: VmRSS before, the kernel's
    peak counter reset (/proc/self/clear_refs <- 5), VmHWM after (elsewhere a 0.5 ms psutil
    sampler); on CUDA: `max_memory_allocated` after `reset_peak_memory_stats`. Meant for a
    fresh process (see `memory_child`)."""
    gc.collect()
    sampler = None
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        method = "cuda max_memory_allocated"
    elif _status_kib("VmRSS") is not None and _reset_peak_rss():
        base, method = _status_kib("VmRSS") * 1024, "VmHWM after clear_refs"
    else:
        sampler = _RssSampler()
        base, method = sampler.peak, "psutil sampler (0.5 ms)"
        sampler.start()
    result = work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    elif sampler is None:
        peak = _status_kib("VmHWM") * 1024
    else:
        sampler.stop.set()
        sampler.join()
        peak = sampler.peak
    del result
    return {"base_bytes": base, "peak_bytes": peak, "delta_bytes": peak - base, "method": method}


def memory_child(module: str, kind: str, ctx: Context) -> dict[str, Any]:
    """Run `python -m MODULE KIND --threads T --device D` in a fresh process (a workload's
    memory measurement) and return the JSON object its last output line holds."""
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", module, kind, "--threads", str(ctx.threads)]
    command += ["--device", str(ctx.device)]
    out = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory child {module} {kind} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_child_main(
    child: Callable[[str, int, str], dict[str, Any]],
    kinds: Sequence[str],
    argv: list[str] | None = None,
) -> None:
    """The command line of a memory child (`python -m MODULE KIND [--threads] [--device]`):
    runs `child(kind, threads, device)` and prints its result as one JSON line."""
    import argparse

    parser = argparse.ArgumentParser(description="one memory measurement (a child process)")
    parser.add_argument("kind", choices=kinds)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    print(json.dumps(child(args.kind, args.threads, args.device)))
