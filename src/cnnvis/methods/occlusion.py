"""Occlusion: the score drop when a sliding window of the input is replaced by a fill value,
from batched forwards without gradients (the definition of Captum's `Occlusion`)."""

from __future__ import annotations

import math

import torch

from ..capture import Recording
from ..errors import MethodError
from ..forwards import fast_settings
from ._batching import accumulator, chunks, positive_int, scoring
from .facts import Cost, MethodInfo, Needs
from .registry import register


def _triple(name: str, value: int | tuple[int, ...], channels: int) -> tuple[int, int, int]:
    """A window or stride as (channels, height, width): an int n -> (C, n, n), (h, w) ->
    (C, h, w), (c, h, w) as given."""
    values = (value, value) if isinstance(value, int) else tuple(value)
    if len(values) == 2:
        values = (channels, *values)
    if len(values) != 3:
        raise MethodError(f"occlusion: {name} must be an int, (h, w) or (c, h, w); got {value!r}")
    c, h, w = (positive_int(name, v, "occlusion") for v in values)
    return c, h, w


def windows(
    shape: tuple[int, ...], window: tuple[int, ...], stride: tuple[int, ...]
) -> list[torch.Tensor]:
    """Per dimension (c, y, x), a boolean (positions, size) tensor: row i marks the i-th window
    position as Captum shifts them, 0, s, 2s, ..., ceil((size - window) / s) + 1 of them, the
    last ones cut at the border. Window j of the grid is the outer product of one row of each."""
    axes = []
    for size, w, s in zip(shape, window, stride, strict=True):
        if w > size:
            raise MethodError(f"occlusion: window {window} is larger than the input {shape}")
        if s > w and size > w:
            raise MethodError(f"occlusion: stride {stride} > window {window} skips pixels")
        starts = torch.arange(math.ceil((size - w) / s) + 1)[:, None] * s
        where = torch.arange(size)[None, :]
        axes.append((where >= starts) & (where < starts + w))
    return axes


def window_masks(axes: list[torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    """The boolean masks (len(ids), C, H, W) of windows `ids` (numbered c-major, then y, x)."""
    c, y, x = axes
    per_c = len(y) * len(x)
    ic, iy, ix = ids // per_c, (ids // len(x)) % len(y), ids % len(x)
    return c[ic][:, :, None, None] & y[iy][:, None, :, None] & x[ix][:, None, None, :]


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
    0, the default, is the dataset mean for a normalized input. The occluded copies are built
    batch_size at a time in one tensor op and scored under inference mode (channels_last and
    BatchNorms folded on CPU, as Score-CAM); y(x) is scored the same way, so each drop is the
    difference of two scores computed alike.
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
    axes = [a.to(x.device) for a in windows(tuple(x.shape[1:]), window, stride)]
    spots = math.prod(len(a) for a in axes)
    cover = [a.sum(0) for a in axes]  # windows covering each (c, y, x): a product per axis
    count = cover[0][:, None, None] * cover[1][None, :, None] * cover[2][None, None, :]
    total = accumulator(x)
    images = torch.arange(n, device=x.device)
    per_forward = min(batch_size, n * spots)
    with scoring(rec, rows=per_forward, **fast_settings(x, per_forward)) as score:
        reference = score(x)[images, images]
        for chunk in chunks(n * spots, batch_size):  # row r: window r % spots of image r // spots
            rows = chunk.to(x.device)
            image, masks = rows // spots, window_masks(axes, rows % spots)
            batch = torch.where(masks, filled[image], x[image])
            drops = reference[image] - score(batch)[torch.arange(len(rows)), image]
            total.index_add_(0, image, drops.to(total.dtype).view(-1, 1, 1, 1) * masks)
    return (total / count.clamp(min=1)).to(x.dtype)


register(
    MethodInfo(
        name="occlusion",
        order=40,
        kind="pixel",
        sign="signed",
        summary="Score drop when a sliding window of the image is greyed out (set to the mean).",
        formula="mean over windows W ∋ p of y(x) − y(x with W filled)",
        paper="Zeiler & Fergus 2014, arXiv:1311.2901",
        cost=Cost(
            "1 forward per window position + 2 of the input (in batches, no backward)",
            forwards=2,
            per="window",
        ),
        compute=occlusion,
        needs=Needs(window=True),
    )
)
