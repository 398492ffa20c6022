"""Shared helpers of the multi-pass methods: rows in chunks, exact accumulation, checks.

A multi-pass method lays out its extra inputs as `rows` (interpolation steps, noisy copies,
occluded or masked images), each belonging to one image of the batch. It builds and runs them
`batch_size` rows at a time, so peak memory is bounded by `batch_size`, never by the number of
steps, samples, windows or masks. `scoring` (forwards without gradients) and `input_gradients`
(forward + input gradient) run those chunks through `forwards.guarded_forward` (eval mode, hooks
removed on exit), optionally in channels_last memory format with BatchNorms folded
(`forwards.fast_forward`, `forwards.fast_settings`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, Protocol, overload

import torch

from ..capture import Recording
from ..errors import MethodError
from ..forwards import Hook, fast_forward, guarded_forward, output_hook
from ..layers import resolve_layer
from ..progress import report_current
from ..targets import (
    ClassTarget,
    checked_scores,
    cross_scores,
    select_logits,
    select_output,
    target_layers,
)

log = logging.getLogger(__name__)

Score = Callable[[torch.Tensor], torch.Tensor]
"""`score(x) -> (B, N)`, as `scoring` yields it."""


def positive_int(name: str, value: object, method: str) -> int:
    """`value` as an int >= 1, or a MethodError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MethodError(f"{method}: {name} must be a positive integer, got {value!r}")
    return value


def chunks(rows: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Row indices 0..rows-1 in consecutive chunks of at most `batch_size`; each chunk done is
    reported as progress of the current stage (`cnnvis.progress`)."""
    for start in range(0, rows, batch_size):
        yield torch.arange(start, min(start + batch_size, rows))
        report_current(min(start + batch_size, rows), rows)


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


def _target_hooks(rec: Recording, store: dict[str, torch.Tensor], *, protect: bool) -> list[Hook]:
    """Hooks on the layers the target reads (a unit's layer), storing their outputs."""
    read = (lambda t: t) if protect else (lambda t: t.clone())
    return [
        (resolve_layer(rec.model, name), output_hook(store, name, read, protect=protect))
        for name in target_layers(rec.target)
    ]


def _taken(store: dict[str, torch.Tensor], rec: Recording) -> dict[str, torch.Tensor]:
    """The target's layers' outputs of the last forward, taken out of `store`."""
    return {name: store.pop(name) for name in target_layers(rec.target) if name in store}


@contextmanager
def scoring(
    rec: Recording,
    *,
    probabilities: bool = False,
    hooks: Sequence[Hook] = (),
    channels_last: bool = False,
    fold: bool = False,
    rows: int | None = None,
) -> Iterator[Score]:
    """Yields `score(x) -> (B, N)`: for each row of a batch x, the score of every recorded
    image's target (its class logit or the class target's own score, the softmax probability
    with `probabilities`; for other targets their own score, whatever `probabilities` says).
    Runs in `forwards.guarded_forward` without gradients; `hooks` ((module, forward hook), ...)
    and the target's layer hooks live only inside the block. `channels_last` and `fold` as in
    `forwards.fast_forward` (`rows`: the usual batch size)."""
    target, images = rec.target, rec.inputs.shape[0]
    store: dict[str, torch.Tensor] = {}
    forward = fast_forward(rec.model, channels_last, fold, rows)

    def score(x: torch.Tensor) -> torch.Tensor:
        output = select_output(forward(x), rec.output_key)
        if isinstance(target, ClassTarget):
            logits = select_logits(output)
            logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
            if probabilities or target.score == "softmax":
                logits = logits.softmax(dim=1)
            elif target.score == "log_softmax":
                logits = logits.log_softmax(dim=1)
            return logits[:, target.index.to(logits.device)]
        found = cross_scores(target, output, _taken(store, rec), x.shape[0], images)
        return found.to(torch.promote_types(found.dtype, torch.float32))

    all_hooks = [*hooks, *_target_hooks(rec, store, protect=False)]
    with guarded_forward(rec.model, hooks=all_hooks, grad=False, inference=True):
        yield score


class Gradient(Protocol):
    """`gradient(x, targets) -> (∂y/∂x, y)`; with `backward=False`, (None, y) from a forward
    without gradients (see `input_gradients`). `targets`: the target of the rows of x
    (`rec.target_rows(rows)`), or for a class target one class index per row."""

    @overload
    def __call__(
        self, x: torch.Tensor, targets: Any, backward: Literal[True] = ...
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    @overload
    def __call__(
        self, x: torch.Tensor, targets: Any, backward: Literal[False]
    ) -> tuple[None, torch.Tensor]: ...


@contextmanager
def input_gradients(
    rec: Recording,
    *,
    channels_last: bool = False,
    fold: bool = False,
    rows: int | None = None,
) -> Iterator[Gradient]:
    """Yields `gradient(x, targets) -> (∂y/∂x (B, C, H, W), y (B,))`: one forward of the batch
    and one `torch.autograd.grad` of the sum of its scores (row i: the score of row i of
    `targets`, the rows' target from `rec.target_rows(rows)`, or for class targets the class
    index of each row), with the plain backward, in `forwards.guarded_forward` with gradients
    and no parameter's `.grad` touched; the sum gives each row its own gradient in eval mode.
    `gradient(x, targets, backward=False)` -> (None, y) from a forward without gradients.
    `channels_last`, `fold` and `rows` as in `scoring`."""
    store: dict[str, torch.Tensor] = {}
    forward = fast_forward(rec.model, channels_last, fold, rows)

    def scores(x: torch.Tensor, targets: Any) -> torch.Tensor:
        output = select_output(forward(x), rec.output_key)
        return checked_scores(rec._rows_target(targets), output, _taken(store, rec), x.shape[0])

    @overload
    def gradient(
        x: torch.Tensor, targets: Any, backward: Literal[True] = ...
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    @overload
    def gradient(
        x: torch.Tensor, targets: Any, backward: Literal[False]
    ) -> tuple[None, torch.Tensor]: ...

    def gradient(
        x: torch.Tensor, targets: Any, backward: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        if not backward:
            with torch.no_grad():
                return None, scores(x, targets).detach()
        x = x.detach().requires_grad_(True)
        y = scores(x, targets)
        (grad,) = torch.autograd.grad(y.sum(), x)
        return grad, y.detach()

    with guarded_forward(rec.model, hooks=_target_hooks(rec, store, protect=True), grad=True):
        yield gradient
