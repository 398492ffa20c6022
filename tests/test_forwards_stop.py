"""Work stops before its next forward once its stop signal is set, and leaves no hook behind."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

import cnnvis
from cnnvis.forwards import WorkStopped, check_stop, guarded_forward, stop_signal


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


class _Counting(nn.Module):
    """Counts forwards and sets the stop signal at the `stop_at`-th one."""

    def __init__(self, inner: nn.Module, event: threading.Event, stop_at: int) -> None:
        super().__init__()
        self.inner, self.event, self.stop_at, self.calls = inner, event, stop_at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.stop_at:
            self.event.set()
        return self.inner(x)


def test_a_multi_pass_method_stops_before_its_next_batch():
    """Occlusion in batches of one row: the signal set during the 3rd forward stops the work
    before the 4th (hundreds would run otherwise), and no hook is left on the model."""
    event = threading.Event()
    model = _Counting(_tiny(), event, stop_at=3)
    x = torch.rand(1, 3, 16, 16)
    with stop_signal(event), pytest.raises(WorkStopped):
        cnnvis.explain(model, x, "occlusion", window=4, stride=2, batch_size=1)
    assert model.calls == 3
    assert _hooks(model) == 0


def test_no_signal_no_hook_and_no_cost():
    """Outside a stop signal guarded_forward puts no pre-hook on the model."""
    model = _tiny()
    with guarded_forward(model, grad=False):
        assert _hooks(model) == 0
        check_stop()  # nothing to stop


def test_a_stopped_signal_refuses_at_once_and_is_thread_local():
    event = threading.Event()
    event.set()
    with pytest.raises(WorkStopped), stop_signal(event):
        pass
    seen: list[bool] = []

    def other_thread() -> None:  # another thread's work is not stopped by this signal
        try:
            check_stop()
            seen.append(True)
        except WorkStopped:
            seen.append(False)

    with stop_signal(threading.Event()):
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert seen == [True]
