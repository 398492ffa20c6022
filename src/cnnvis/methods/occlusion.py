"""Occlusion: the score drop when a sliding window of the input is replaced by a fill value,
from batched forwards without gradients (the definition of Captum's `Occlusion`)."""

from __future__ import annotations

import math

import torch

from ..capture import Recording
from ..errors import MethodError
from ._batching import accumulator, chunks, positive_int
from .registry import MethodInfo, register


def _triple(name: str, value: int | tuple[int, ...], channels: int) -> tuple[int, int, int]:
    """A window or stride as (channels, height, width): an int n -> (C, n, n), (h, w) ->
    (C, h, w), (c, h, w) as given."""
    values = (value, value) if isinstance(value, int) else tuple(value)
    if len(values) == 2:
        values = (channels, *values)
    if len(values) != 3:
        raise MethodError(f"occlusion: {name} must be an int, (h, w) or (c, h, w); got {value!r}")
    return tuple(positive_int(name, v, "occlusion") for v in values)  # type: ignore[return-value]


def windows(shape: tuple[int, ...], window: tuple[int, ...], stride: tuple[int, ...]):
    """Slices (c, y, x) of every window position, as Captum shifts them: positions 0, s, 2s, ...
    ceil((size - window) / s) + 1 of them per dimension, the last ones cut at the border."""
    axes = []
    for size, w, s in zip(shape, window, stride, strict=True):
        if w > size:
            raise MethodError(f"occlusion: window {window} is larger than the input {shape}")
        if s > w and size > w:
            raise MethodError(f"occlusion: stride {stride} > window {window} skips pixels")
        count = math.ceil((size - w) / s) + 1
        axes.append([slice(i * s, min(i * s + w, size)) for i in range(count)])
    return [(c, y, x) for c in axes[0] for y in axes[1] for x in axes[2]]


def occlusion(
    rec: Recording,
    layer: str | None = None,
    *,
    window: int | tuple[int, ...] = 16,
    stride: int | tuple[int, ...] = 8,
    fill: float | torch.Tensor = 0.0,
    batch_size: int = 64,
) -> torch.Tensor:
    """Σ_windows W ∋ p (y(x) - y(x with W set to fill)) / #windows covering p (Zeiler & Fergus
    2014; Captum's normalization). `window` and `stride` are in pixels (an int, (h, w), or
    (c, h, w) to occlude channels apart); `fill` is in model-input space, broadcast to the input:
    0, the default, is the dataset mean for a normalized input.
    """
    x = rec.inputs.detach()
    n, channels = x.shape[:2]
    window = _triple("window", window, channels)
    stride = _triple("stride", stride, channels)
    batch_size = positive_int("batch_size", batch_size, "occlusion")
    try:
        filled = torch.broadcast_to(torch.as_tensor(fill, dtype=x.dtype, device=x.device), x.shape)
    except RuntimeError:
        raise MethodError(
            f"occlusion: fill does not broadcast to the input {tuple(x.shape)}"
        ) from None
    spots = windows(tuple(x.shape[1:]), window, stride)
    count = torch.zeros(x.shape[1:], dtype=torch.int64, device=x.device)
    for spot in spots:
        count[spot] += 1
    total = accumulator(x)
    reference = rec.scores.detach()
    for rows in chunks(n * len(spots), batch_size):  # row r: window r % k of image r // k
        image = (rows // len(spots)).tolist()
        batch = x[image].clone()
        for j, (i, r) in enumerate(zip(image, rows.tolist(), strict=True)):
            spot = spots[r % len(spots)]
            batch[j][spot] = filled[i][spot]
        drops = reference[image] - rec.score(batch, rec.targets[image])
        for i, r, drop in zip(image, rows.tolist(), drops.tolist(), strict=True):
            total[i][spots[r % len(spots)]] += drop
    return (total / count.clamp(min=1)).to(x.dtype)


register(
    MethodInfo(
        name="occlusion",
        order=40,
        kind="pixel",
        summary="Score drop when a sliding window of the image is greyed out (set to the mean).",
        formula="mean over windows W ∋ p of y(x) − y(x with W filled)",
        paper="Zeiler & Fergus 2014, arXiv:1311.2901",
        passes="1 forward per window position (in batches, no backward)",
        compute=occlusion,
        needs=("window size",),
    )
)
