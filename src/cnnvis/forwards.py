"""The one runner for forwards through the user's model: guarded, hooked, in channels_last.

Every forward cnnvis runs (the recorded forward of `capture`, the batched extra forwards of the
multi-pass methods, the evaluation scorer, feature visualization, the layer probe) goes through
`guarded_forward`: the model's lock is held and it is in eval mode (`model_state_guard`, every
`training` flag put back on exit), the given forward hooks are registered and removed in
`finally` (also when the forward raises, and the exception is never swallowed), gradients are on
or off as asked, and autocast is off so maps come out in the model's own precision. `run_fast`
adds channels_last memory format and BatchNorm folding for batches big enough to gain.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from typing import Any, TypedDict

import torch
from torch import nn

from .folding import BatchNormFolding

log = logging.getLogger(__name__)

Hook = tuple[nn.Module, Callable[..., Any]]  # (module, forward hook)
Rebuild = Callable[[torch.Tensor], Any]

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()

# The stop signal of the work this thread does (see `stop_signal`; None: not stoppable)
_stop = threading.local()

# input elements per forward below which channels_last is not used (tests lower it)
CHANNELS_LAST_MIN_ELEMENTS = 2**20


def model_lock(model: nn.Module) -> threading.RLock:
    """One re-entrant lock per model object: forwards on one model never interleave."""
    with _LOCKS_LOCK:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextmanager
def model_state_guard(model: nn.Module) -> Iterator[nn.Module]:
    """Hold the model's lock, switch it to eval mode, and put every module's `training` flag
    back on exit — also when the body raises (the exception is never swallowed)."""
    with model_lock(model):
        modes = [(m, m.training) for m in model.modules()]
        try:
            model.eval()
            yield model
        finally:
            for module, training in modes:
                module.training = training


@contextmanager
def hooked(hooks: Sequence[Hook]) -> Iterator[None]:
    """Forward `hooks` ((module, hook), ...) registered for the block, removed on exit."""
    handles = []
    try:
        for module, hook in hooks:
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


class WorkStopped(Exception):
    """Model work stopped before its next forward: the `stop_signal` it runs under was set (a
    web request whose client went away or whose time ran out)."""


@contextmanager
def stop_signal(event: threading.Event) -> Iterator[None]:
    """Model work on this thread inside the block stops with `WorkStopped` before its next
    forward (a method's next batch never starts) once `event` is set from another thread.
    Nothing is hooked outside `guarded_forward`, and the user's model keeps no hook."""
    previous = getattr(_stop, "event", None)
    _stop.event = event
    try:
        check_stop()
        yield
    finally:
        _stop.event = previous


def check_stop() -> None:
    """Raise `WorkStopped` when this thread's work was asked to stop (see `stop_signal`)."""
    event = getattr(_stop, "event", None)
    if event is not None and event.is_set():
        raise WorkStopped("the work was asked to stop")


@contextmanager
def _stop_check(model: nn.Module) -> Iterator[None]:
    """While a stop signal is active on this thread: a forward pre-hook on `model` that checks
    it before every forward (TorchScript takes no Python hook: checked on entry only)."""
    check_stop()
    if getattr(_stop, "event", None) is None:
        yield
        return
    handle = None
    with suppress(AttributeError, RuntimeError):  # a ScriptModule
        handle = model.register_forward_pre_hook(lambda module, inputs: check_stop())
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()


def no_autocast(inputs: torch.Tensor) -> torch.autocast:
    """Autocast off: maps are computed in the model's own (float32) precision even when the
    caller runs inside `torch.autocast`."""
    device = inputs.device.type if inputs.device.type in ("cpu", "cuda", "mps", "xpu") else "cpu"
    return torch.autocast(device, enabled=False)


@contextmanager
def guarded_forward(
    model: nn.Module,
    *,
    hooks: Sequence[Hook] = (),
    grad: bool,
    inference: bool = False,
    like: torch.Tensor | None = None,
) -> Iterator[nn.Module]:
    """The model ready for forwards inside the block: `model_state_guard`, `hooks` on, and
    autograd on (`grad=True`, also inside the caller's `no_grad` / `inference_mode`) or off
    (`torch.no_grad`, or `torch.inference_mode` with `inference=True`: faster, but its tensors
    must never reach autograd, so not for forwards whose results a model may cache); autocast
    off for inputs like `like`."""
    with ExitStack() as stack:
        if grad:
            stack.enter_context(torch.inference_mode(False))
            stack.enter_context(torch.enable_grad())
        if like is not None:
            stack.enter_context(no_autocast(like))
        stack.enter_context(model_state_guard(model))
        if not grad:
            stack.enter_context(torch.inference_mode() if inference else torch.no_grad())
        stack.enter_context(hooked(hooks))
        stack.enter_context(_stop_check(model))
        yield model


def first_tensor(output: Any) -> tuple[torch.Tensor | None, Rebuild | None]:
    """(the first tensor of a module's output (a tensor, tuple or list), a function that puts a
    replacement for it back into an output of the same structure); (None, None) without one."""
    if isinstance(output, torch.Tensor):
        return output, lambda t: t
    if isinstance(output, tuple | list):
        for i, item in enumerate(output):
            if isinstance(item, torch.Tensor):
                return item, lambda t, i=i: type(output)(
                    [t if j == i else o for j, o in enumerate(output)]
                )
    return None, None


def device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and floating dtype of the model's first floating parameter (CPU float32 for a
    model without one)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def output_hook(
    store: dict[str, Any],
    key: str,
    read: Callable[[torch.Tensor], Any] = lambda t: t,
    *,
    protect: bool = True,
    calls: dict[str, int] | None = None,
) -> Callable[..., Any]:
    """A forward hook that stores `read(output)` under `key` (the first tensor of the output;
    outputs without a tensor are ignored) and, with `protect`, hands downstream a clone so that
    later in-place operations (`ReLU(inplace=True)`, `out += identity`) cannot change what was
    stored. `calls` counts the module's calls by key."""

    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        tensor, rebuild = first_tensor(output)
        if tensor is None or rebuild is None:
            return None
        if calls is not None:
            calls[key] = calls.get(key, 0) + 1
        store[key] = read(tensor)
        return rebuild(tensor.clone()) if protect else None

    return hook


def channels_last_pays(x: torch.Tensor, rows: int | None = None) -> bool:
    """Whether the model should see batches like `x` (of `rows` rows; default x's own) in
    channels_last memory format: on CPU in float32, 4-D, with at least
    `CHANNELS_LAST_MIN_ELEMENTS` input elements (oneDNN's own layout: a ResNet-50 forward +
    input gradient of 8 224x224 images took 0.45 s instead of 0.57 s, two threads). Values
    equal up to float32 rounding. Not measured on GPU, so not used there."""
    elements = x.numel() if rows is None else rows * x[0].numel()
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() == 4
        and elements >= CHANNELS_LAST_MIN_ELEMENTS
    )


def layout_error(error: RuntimeError) -> bool:
    """Whether a forward failed because of the memory layout (`.view` on channels_last)."""
    return any(word in str(error) for word in ("stride", "contiguous"))


def fast_forward(
    model: nn.Module, channels_last: bool, fold: bool, rows: int | None
) -> Callable[[torch.Tensor], Any]:
    """The model as a function of a batch, in channels_last memory format (contiguous again
    from then on if the model's code cannot take it, e.g. a `.view`) and with its BatchNorms
    folded (`BatchNormFolding`; forwards without gradients only): the same values up to
    rounding. `rows` is the usual batch size, for the folding's break-even."""
    run = BatchNormFolding(model, rows) if fold else model

    def forward(x: torch.Tensor) -> Any:
        nonlocal channels_last
        if channels_last:
            try:
                return run(x.contiguous(memory_format=torch.channels_last))
            except RuntimeError as error:
                if not layout_error(error):
                    raise  # the model's own failure, not the memory layout: no second run
                log.info("channels_last forward failed (%s); using contiguous inputs", error)
                channels_last = False
        return run(x.contiguous())

    return forward


class FastSettings(TypedDict):
    """The keyword arguments of `fast_forward` / `scoring` that `fast_settings` chooses."""

    channels_last: bool
    fold: bool


def fast_settings(x: torch.Tensor, rows: int, fold: bool = True) -> FastSettings:
    """The speed-ups for forwards of `rows` rows like `x`: channels_last where it pays (see
    `channels_last_pays`) and, on CPU, BatchNorm folding (`fold`; forwards without gradients
    only: under autograd the skipped BatchNorm's view makes the in-place ReLU after it
    costly). Not measured on GPU, so not used there."""
    return {"channels_last": channels_last_pays(x, rows), "fold": x.device.type == "cpu" and fold}
