"""The workload registry. Every module in this package registers its workloads on import.

A workload is a function `run(ctx) -> list[Row]` registered under a name. To benchmark a new
method (Score-CAM, Integrated Gradients, ...), add `benchmarks/workloads/<name>.py` with

    @register("score-cam-resnet18", "Score-CAM vs TorchCAM / grad-cam, ResNet-18 layer4")
    def score_cam(ctx: Context) -> list[Row]:
        ...time cnnvis and the peers with ctx.measure(...), check agreement, return rows...

and it is discovered, listed by `--list`, selectable by `--only`, and part of `--quick` unless
registered with `quick=False`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from ..common import Context, Row


@dataclass(frozen=True)
class Workload:
    name: str
    summary: str
    run: Callable[[Context], list[Row]]
    quick: bool = True  # part of --quick
    fresh_process: bool = False  # in a full run, run it in a new process of its own


WORKLOADS: dict[str, Workload] = {}


def register(
    name: str, summary: str, *, quick: bool = True, fresh_process: bool = False
) -> Callable[[Callable[[Context], list[Row]]], Callable[[Context], list[Row]]]:
    """`fresh_process`: the workload compares work in other processes (Ray actors) with work in
    this one, so it must not run in a process aged by the workloads before it."""

    def decorate(run: Callable[[Context], list[Row]]) -> Callable[[Context], list[Row]]:
        if name in WORKLOADS:
            raise ValueError(f"workload {name!r} is already registered")
        WORKLOADS[name] = Workload(name, summary, run, quick, fresh_process)
        return run

    return decorate


_ORDER = ("sweep", "multi", "gradcam", "guided", "throughput", "memory")


def discover() -> dict[str, Workload]:
    """Import every workload module (the known ones first, in the order of the issue's targets)."""
    found = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    for name in sorted(found, key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n)):
        importlib.import_module(f"{__name__}.{name}")
    return WORKLOADS
