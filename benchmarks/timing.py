"""Timing: threads fixed, warm-up, interleaved repeats, medians; CUDA synchronized.

Candidates are run round-robin (the order rotates every repeat), so slow drift of the machine —
thermal state, other processes, allocator growth — falls on every candidate alike instead of on
whichever ran last. Each sample is wall-clock seconds around one call, after a `gc.collect()`,
with `torch.cuda.synchronize()` on both sides when the device is a GPU. Process CPU time is
recorded beside it (it is less sensitive to other processes on a shared machine).
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch


@dataclass
class Timing:
    """Samples of one candidate (seconds)."""

    name: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    warmup: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    @property
    def spread(self) -> float:
        """(max - min) / median: how noisy the samples were."""
        return (max(self.wall) - min(self.wall)) / self.median if self.median > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "median_s": self.median,
            "min_s": min(self.wall),
            "max_s": max(self.wall),
            "cpu_median_s": self.cpu_median,
            "wall_s": self.wall,
            "cpu_s": self.cpu,
            "warmup_s": self.warmup,
        }


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """(wall, cpu) seconds of one call; its result is dropped before returning."""
    gc.collect()
    synchronize(device)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    return time.perf_counter() - wall0, time.process_time() - cpu0


def measure(
    candidates: Mapping[str, Callable[[], object]],
    *,
    repeats: int,
    device: torch.device,
    warmup: int = 1,
) -> dict[str, Timing]:
    """Time every candidate `repeats` times, interleaved, after `warmup` untimed rounds."""
    names = list(candidates)
    timings = {name: Timing(name) for name in names}
    for _ in range(warmup):
        for name in names:
            timings[name].warmup.append(time_once(candidates[name], device)[0])
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            wall, cpu = time_once(candidates[name], device)
            timings[name].wall.append(wall)
            timings[name].cpu.append(cpu)
    return timings


def set_threads(threads: int) -> int:
    """Fix torch's intra-op threads (and inter-op threads when still allowed); return intra."""
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already set, or parallel work has started
        torch.set_num_interop_threads(threads)
    return torch.get_num_threads()
