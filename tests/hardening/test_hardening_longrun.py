"""Long runs and threads: 500 consecutive explanations with one model keep resident memory
flat (growth under 5% after warm-up), leave no hook behind and give bit-identical maps for
identical input (seeded stochastic methods included); two threads explaining with the same
model object at once get exactly what they get one after the other.
"""

from __future__ import annotations

import gc
import io
import threading
from collections.abc import Callable

import numpy as np
import psutil
import pytest
import torch
from PIL import Image
from torch import nn

import cnnvis
from cnnvis.model import LoadedModel, Preprocess
from cnnvis.targets import UnitTarget

from conftest import TinyCNN

RUNS = 500
WARM_UP = 50


@pytest.fixture(autouse=True)
def one_intra_op_thread():
    """Tiny models gain nothing from intra-op threads; with them, 2 busy cores spend most of
    the time synchronizing (3 s -> 12 s for the 500 runs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def hooks_left(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def png_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


# Each call: (method, params). The stochastic ones are seeded, so every repeat is identical.
CALLS: list[tuple[str, dict]] = [
    ("gradient", {}),
    ("grad-cam", {}),
    ("guided-backprop", {}),
    ("smoothgrad", {"samples": 4, "seed": 7}),
    ("guided-grad-cam", {}),
    ("rise", {"masks": 8, "seed": 3}),
]


def test_500_explanations_memory_hooks_and_identical_results():
    model = LoadedModel(TinyCNN().eval(), name="tiny", preprocess=Preprocess(36, 32))
    tensor = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    encoded = png_bytes(1)  # decoded from bytes on every image call
    first: dict[int, torch.Tensor] = {}
    process = psutil.Process()

    def one(i: int) -> None:
        key = i % (2 * len(CALLS))  # the same call (method, input, target) every 12 runs
        method, params = CALLS[key % len(CALLS)]
        images = encoded if key % 2 else tensor
        result = cnnvis.explain(model, images, method, target=key % 5, **params)
        if key not in first:
            first[key] = result.map
        else:
            assert torch.equal(result.map, first[key]), (i, method)

    for i in range(WARM_UP):
        one(i)
    gc.collect()
    start = process.memory_info().rss
    for i in range(WARM_UP, WARM_UP + RUNS):
        one(i)
        if i % 100 == 0:
            assert hooks_left(model.module) == 0
    gc.collect()
    end = process.memory_info().rss
    growth = end / start - 1
    print(f"\nRSS after warm-up {start / 2**20:.1f} MiB, then {end / 2**20:.1f} MiB after {RUNS} "
          f"runs: {growth:+.2%}")  # fmt: skip
    assert growth < 0.05 and end - start < 16 * 2**20  # and under 32 KiB a run
    assert hooks_left(model.module) == 0 and not model.module.training
    assert torch.is_grad_enabled() and not torch._C._len_torch_function_stack()


# ----------------------------------------------------------------------------- threads


class BNNet(nn.Module):
    """conv-BN-ReLU-conv-ReLU-dropout-GAP-linear: train-mode flags that a race would expose."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1, stride=2)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(12, 6)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv1(x)))
        x = self.drop(torch.relu(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


def jobs(x1: torch.Tensor, x2: torch.Tensor) -> list[tuple[str, Callable]]:
    """Pairs of different calls (method, layer, target, input) to run at the same time."""
    return [
        ("grad-cam@conv2", lambda m: cnnvis.explain(m, x1, "grad-cam", "conv2", 1)),
        ("guided-backprop", lambda m: cnnvis.explain(m, x2, "guided-backprop", target=[4, 0])),
        ("smoothgrad", lambda m: cnnvis.explain(m, x1, "smoothgrad", target=2, samples=3)),
        ("score-cam@conv1", lambda m: cnnvis.explain(m, x2, "score-cam", "conv1", [5, 3])),
        ("unit target", lambda m: cnnvis.explain(m, x1, "gradient", target=UnitTarget("conv2", 3))),
        ("occlusion", lambda m: cnnvis.explain(m, x2, "occlusion", target=1, window=8, stride=8)),
        ("sweep", lambda m: cnnvis.sweep(m, x1, "grad-cam", ["conv1", "conv2"], target=0)),
        ("deconvnet", lambda m: cnnvis.explain(m, x2, "deconvnet", target=3)),
    ]  # fmt: skip


def maps(result) -> list[torch.Tensor]:
    if isinstance(result, cnnvis.Sweep):
        return [result[layer].map for layer in result.layers]
    return [result.map]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_two_threads_on_one_model_get_the_sequential_results(dtype):
    """Each pair of jobs runs at once (released together by a barrier), 6 times over; every
    result must equal the one computed alone, bit for bit. The model is in train mode (BN and
    dropout) to expose a mode race; bfloat16 shares one float32 copy between the threads."""
    model = BNNet().to(dtype).train()
    g = torch.Generator().manual_seed(1)
    x1, x2 = torch.randn(1, 3, 16, 16, generator=g), torch.randn(2, 3, 16, 16, generator=g)
    work = jobs(x1, x2)
    expected = [maps(run(model)) for _, run in work]
    pairs = [(i, (i + 1) % len(work)) for i in range(len(work))]
    errors: list[str] = []

    def worker(index: int, barrier: threading.Barrier) -> None:
        name, run = work[index]
        barrier.wait()
        try:
            got = maps(run(model))
        except Exception as error:  # reported below, with the job's name
            errors.append(f"{name}: {type(error).__name__}: {error}")
            return
        if not all(torch.equal(a, b) for a, b in zip(got, expected[index], strict=True)):
            errors.append(f"{name}: differs from its sequential result")

    for _ in range(6):
        for a, b in pairs:
            barrier = threading.Barrier(2)
            threads = [threading.Thread(target=worker, args=(i, barrier)) for i in (a, b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    assert not errors, errors
    assert model.training and model.bn.training and hooks_left(model) == 0
