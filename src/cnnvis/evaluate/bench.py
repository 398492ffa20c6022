"""The evaluation's speed check: deletion + insertion at 100 steps on ResNet-50 for one image
should cost at most 1.2x the time of 200 plain forward passes at the same batch size.

    from cnnvis.evaluate.bench import deletion_insertion_ratio
    deletion_insertion_ratio()    # {'ratio': 1.0..., 'evaluation_s': ..., 'forwards_s': ...}

The benchmark suite gates the same comparison, interleaved with warm-up and checked against a
reference loop: `python -m benchmarks.run --only evaluate-deletion-insertion-resnet50`.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from ..model import LoadedModel, as_loaded
from .faithfulness import deletion_insertion

TARGET_RATIO = 1.2


def _resnet50() -> nn.Module:
    from torchvision.models import resnet50

    torch.manual_seed(0)
    return resnet50(weights=None).eval()


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def deletion_insertion_ratio(
    model: nn.Module | LoadedModel | None = None,
    *,
    steps: int = 100,
    batch_size: int = 32,
    repeats: int = 3,
    size: int = 224,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Median time of deletion + insertion (RISE protocol, `steps` steps, one image) divided by
    the median time of `2 * steps` plain forward passes at `batch_size` under inference mode.

    The model defaults to a random-init torchvision ResNet-50 (timing does not depend on the
    weights). Each repeat runs the evaluation and the plain forwards back to back.
    """
    lm = as_loaded(model if model is not None else _resnet50())
    if device is not None:
        lm.module.to(device)
    dev = lm.device
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, size, size, generator=g).to(dev)
    relevance = torch.rand(size, size, generator=g)
    plain = torch.randn(batch_size, 3, size, size, generator=g).to(dev)
    total = 2 * steps
    batches = [(i, min(batch_size, total - i)) for i in range(0, total, batch_size)]

    def forwards() -> None:
        with torch.inference_mode():
            for _, n in batches:
                lm.module(plain[:n])
        _sync(dev)

    def evaluation() -> None:
        deletion_insertion(lm, x, relevance, 0, steps=steps, batch_size=batch_size, seed=seed)
        _sync(dev)

    forwards()  # warm-up: allocator, kernels, lazy initialisation
    eval_times, forward_times = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        evaluation()
        t1 = time.perf_counter()
        forwards()
        t2 = time.perf_counter()
        eval_times.append(t1 - t0)
        forward_times.append(t2 - t1)
    e, f = _median(eval_times), _median(forward_times)
    return {
        "ratio": e / f,
        "target": TARGET_RATIO,
        "ok": e / f <= TARGET_RATIO,
        "evaluation_s": e,
        "forwards_s": f,
        "forward_passes": total,
        "evaluation_forward_passes": 2 * (steps - 1) + 3,
        "steps": steps,
        "batch_size": batch_size,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "model": lm.name if isinstance(model, LoadedModel) else type(lm.module).__name__,
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
