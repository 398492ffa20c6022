"""Shared helpers of the multi-pass methods: rows in chunks, exact accumulation, checks.

A multi-pass method lays out its extra inputs as `rows` (interpolation steps, noisy copies,
occluded or masked images), each belonging to one image of the batch. It builds and runs them
`batch_size` rows at a time, so peak memory is bounded by `batch_size`, never by the number of
steps, samples, windows or masks. `scoring` (forwards without gradients) and `input_gradients`
(forward + input gradient) run those chunks with the model in eval mode, hooks removed on exit,
and optionally in channels_last memory format with BatchNorms folded (`_folding.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..capture import CHANNELS_LAST_MIN_ELEMENTS as RECORD_CHANNELS_LAST_MIN_ELEMENTS
from ..capture import Recording, first_tensor
from ..errors import MethodError
from ..guard import model_state_guard
from ..layers import resolve_layer
from ..targets import select_logits, target_scores
from ._folding import BatchNormFolding

log = logging.getLogger(__name__)


def positive_int(name: str, value: object, method: str) -> int:
    """`value` as an int >= 1, or a MethodError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MethodError(f"{method}: {name} must be a positive integer, got {value!r}")
    return value


def chunks(rows: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Row indices 0..rows-1 in consecutive chunks of at most `batch_size`."""
    for start in range(0, rows, batch_size):
        yield torch.arange(start, min(start + batch_size, rows))


def accumulator(like: torch.Tensor) -> torch.Tensor:
    """A zero tensor shaped like `like` in float64 (float32 where the device has no float64):
    sums of many per-row maps stay exact enough that, e.g., the mean of identical maps is the
    map itself bit for bit."""
    dtype = torch.float32 if like.device.type == "mps" else torch.float64
    return torch.zeros(like.shape, dtype=dtype, device=like.device)


def choice(name: str, value: object, options: tuple[str, ...], method: str) -> str:
    """`value` if it is one of `options`, else a MethodError listing them."""
    if value not in options:
        raise MethodError(f"{method}: {name} must be one of {', '.join(options)}; got {value!r}")
    return str(value)


# ------------------------------------------------------------------ batched forwards


Hook = tuple[nn.Module, Callable]


def _fast_forward(
    model: nn.Module, channels_last: bool, fold: bool, rows: int | None
) -> Callable[[torch.Tensor], Any]:
    """The model as a function of a batch, in channels_last memory format (contiguous again if
    the model's code cannot take it, e.g. a `.view`) and with its BatchNorms folded
    (`BatchNormFolding`): the same values up to rounding."""
    run = BatchNormFolding(model, rows) if fold else model

    def forward(x: torch.Tensor):
        nonlocal channels_last
        if channels_last:
            try:
                return run(x.contiguous(memory_format=torch.channels_last))
            except RuntimeError as error:  # e.g. `.view` on non-contiguous memory
                log.info("channels_last forward failed (%s); using contiguous inputs", error)
                channels_last = False
        return run(x.contiguous())

    return forward


# input elements per forward below which channels_last is not used (the recorded forward's
# threshold; tests lower this copy to reach the multi-pass paths with tiny inputs)
CHANNELS_LAST_MIN_ELEMENTS = RECORD_CHANNELS_LAST_MIN_ELEMENTS


def fast_settings(x: torch.Tensor, rows: int, fold: bool = True) -> dict[str, bool]:
    """The speed-ups for forwards of `rows` rows like `x`: on CPU in float32, channels_last
    memory format (oneDNN's own layout: about 20% off a ResNet-18 forward+backward of 25
    224x224 rows, one thread), for batches of at least `CHANNELS_LAST_MIN_ELEMENTS` input
    elements; on CPU, BatchNorm folding (`fold`; forwards without gradients only: under
    autograd the skipped BatchNorm's view makes the in-place ReLU after it costly). Not
    measured on GPU, so not used there."""
    cpu = x.device.type == "cpu"
    big = rows * x[0].numel() >= CHANNELS_LAST_MIN_ELEMENTS
    return {"channels_last": cpu and x.dtype == torch.float32 and big, "fold": cpu and fold}


@contextmanager
def scoring(
    rec: Recording,
    *,
    probabilities: bool = False,
    hooks: Sequence[Hook] = (),
    channels_last: bool = False,
    fold: bool = False,
    rows: int | None = None,
) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """Yields `score(x) -> (B, N)`: for each row of a batch x, the score of every recorded
    image's target — its logit (softmax probability with `probabilities`), or the unit's
    activation for a unit target. Runs under inference mode with the model in eval mode
    (`model_state_guard`); `hooks` ((module, forward hook), ...) and the unit's hook live only
    inside the block and are removed on exit, also when it raises. `channels_last` and `fold`
    as in `_fast_forward` (`rows`: the usual batch size, for the folding's break-even)."""
    model, unit, targets = rec.model, rec.unit, rec.targets
    store: dict[str, torch.Tensor] = {}
    forward = _fast_forward(model, channels_last, fold, rows)

    def unit_hook(module, args, output):
        tensor, _ = first_tensor(output)
        store["unit"] = unit.scores(tensor).clone()  # before any in-place op downstream

    def score(x: torch.Tensor) -> torch.Tensor:
        logits = select_logits(forward(x), rec.output_key)
        dtype = torch.promote_types(logits.dtype, torch.float32)
        if unit is not None:
            values = store.pop("unit").to(dtype)
            return values.expand(logits.shape[0]).clone()[:, None].expand(-1, len(targets))
        logits = logits.to(dtype)
        if probabilities:
            logits = logits.softmax(dim=1)
        return logits[:, targets.to(logits.device)]

    with model_state_guard(model), torch.inference_mode(), _hooked(rec, hooks, unit_hook):
        yield score


@contextmanager
def input_gradients(
    rec: Recording,
    *,
    channels_last: bool = False,
    fold: bool = False,
    rows: int | None = None,
) -> Iterator[Callable[..., tuple[torch.Tensor | None, torch.Tensor]]]:
    """Yields `gradient(x, targets) -> (∂y/∂x (B, C, H, W), y (B,))`: one forward of the batch
    and one `torch.autograd.grad` of the sum of its scores (row i: the logit of targets[i], or
    the unit's activation), with the plain backward, the model in eval mode
    (`model_state_guard`) and no parameter's `.grad` touched; the sum gives each row its own
    gradient in eval mode. `gradient(x, targets, backward=False)` -> (None, y) from a forward
    without gradients. `channels_last`, `fold` and `rows` as in `scoring`."""
    model, unit = rec.model, rec.unit
    store: dict[str, torch.Tensor] = {}
    forward = _fast_forward(model, channels_last, fold, rows)

    def unit_hook(module, args, output):
        tensor, rebuild = first_tensor(output)
        store["unit"] = unit.scores(tensor)
        return rebuild(tensor.clone())  # in-place ops downstream must not touch what it read

    def scores(x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = select_logits(forward(x), rec.output_key)
        return store.pop("unit") if unit is not None else target_scores(logits, targets)

    def gradient(x: torch.Tensor, targets: torch.Tensor, backward: bool = True):
        if not backward:
            with torch.no_grad():
                return None, scores(x, targets).detach()
        x = x.detach().requires_grad_(True)
        y = scores(x, targets)
        (grad,) = torch.autograd.grad(y.sum(), x)
        return grad, y.detach()

    with (
        torch.inference_mode(False),
        torch.enable_grad(),
        model_state_guard(model),
        _hooked(rec, (), unit_hook),
    ):
        yield gradient


@contextmanager
def _hooked(rec: Recording, hooks: Sequence[Hook], unit_hook: Callable) -> Iterator[None]:
    """`hooks` and, for a unit target, `unit_hook` on the unit's layer, removed on exit."""
    handles = []
    try:
        for module, hook in hooks:
            handles.append(module.register_forward_hook(hook))
        if rec.unit is not None:
            module = resolve_layer(rec.model, rec.unit.layer)
            handles.append(module.register_forward_hook(unit_hook))
        yield
    finally:
        for handle in handles:
            handle.remove()
