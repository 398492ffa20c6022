"""Shared helpers of the multi-pass methods: rows in chunks, exact accumulation, checks.

A multi-pass method lays out its extra inputs as `rows` (interpolation steps, noisy copies,
occluded or masked images), each belonging to one image of the batch. It builds and runs them
`batch_size` rows at a time, so peak memory is bounded by `batch_size`, never by the number of
steps, samples, windows or masks.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..errors import MethodError


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
