"""Display post-processing of raw maps: pure functions on torch tensors, batch first.

Results keep their maps raw and signed; these functions make the display versions the tutorial
drew (min-max, all / pos / neg rescale, grayscale, ReLU, upsampling). Every per-sample division
is zero-safe: a constant map (all zero, or NaN/inf anywhere) becomes all zeros, never NaN.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from cnnvis import errors

RescaleMode = Literal["all", "pos", "neg"]
RESCALE_MODES: tuple[RescaleMode, ...] = ("all", "pos", "neg")
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)
UPSAMPLE_MODES: tuple[str, ...] = ("nearest", "nearest-exact", "bilinear", "bicubic", "area")


class DisplayError(errors.CnnvisError, ValueError):
    """A map or display option that cannot be drawn (wrong shape, unknown mode or colormap)."""


def _check_batched(map: torch.Tensor, dims: tuple[int, ...], what: str) -> None:
    """Raise DisplayError unless `map` is a tensor with one of the allowed numbers of dims."""
    if not isinstance(map, torch.Tensor):
        raise DisplayError(f"{what} must be a torch.Tensor, got {type(map).__name__}")
    if map.dim() not in dims:
        shapes = " or ".join(f"{d}-d" for d in dims)
        raise DisplayError(
            f"{what} must be {shapes} with the batch first, got shape {tuple(map.shape)}; "
            "add a batch dimension with map[None] for a single map"
        )


def _floating(map: torch.Tensor) -> torch.Tensor:
    """`map` as a floating tensor (integer and bool maps become float32)."""
    return map if map.is_floating_point() else map.float()


def _expand(stat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-sample statistic of shape (N,) reshaped to broadcast against `like` (N, ...)."""
    return stat.reshape(-1, *([1] * (like.dim() - 1)))


def _safe_divide(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den per sample, and 0 where den is not a positive finite number.

    out_i = num_i / den_i if 0 < den_i < inf else 0
    """
    ok = torch.isfinite(den) & (den > 0)
    safe = torch.where(ok, den, torch.ones_like(den))
    out = num / _expand(safe, num)
    return torch.where(_expand(ok, num), out, torch.zeros_like(out))


def _sample_min(map: torch.Tensor) -> torch.Tensor:
    """The minimum of each sample: (N, ...) -> (N,)."""
    return map.flatten(1).amin(dim=1)


def _sample_max(map: torch.Tensor) -> torch.Tensor:
    """The maximum of each sample: (N, ...) -> (N,)."""
    return map.flatten(1).amax(dim=1)


def normalize(map: torch.Tensor, *, per_sample: bool = True) -> torch.Tensor:
    """Min-max to [0, 1], per sample by default; a constant or non-finite sample gives zeros.

    out = (map - min) / (max - min), and 0 where max - min is 0 or not finite.
    """
    _check_batched(map, (2, 3, 4, 5), "map")
    map = _floating(map)
    if not per_sample:
        return normalize(map.reshape(1, -1), per_sample=True).reshape(map.shape)
    lo, hi = _sample_min(map), _sample_max(map)
    return _safe_divide(map - _expand(lo, map), hi - lo)


def symmetric(map: torch.Tensor) -> torch.Tensor:
    """Scale a signed map to [-1, 1] keeping zero at zero, per sample and zero-safe.

    out = map / max|map|, and 0 where max|map| is 0 or not finite.
    """
    _check_batched(map, (2, 3, 4, 5), "map")
    map = _floating(map)
    return _safe_divide(map, _sample_max(map.abs()))


def is_blank(map: torch.Tensor) -> torch.Tensor:
    """Which samples have nothing to show: constant (e.g. all zero) or containing NaN/inf.

    blank_i = not (max_i - min_i > 0 and finite)
    """
    _check_batched(map, (2, 3, 4, 5), "map")
    map = _floating(map)
    span = _sample_max(map) - _sample_min(map)
    return ~(torch.isfinite(span) & (span > 0))


def rescale(map: torch.Tensor, mode: RescaleMode) -> torch.Tensor:
    """The tutorial's guided-backprop display in [0, 1], per sample and zero-safe.

    all: (map - min) / (max - min);  pos: max(map, 0) / max(map);  neg: max(-map, 0) / max(-map)
    (pos / neg are zero where the map has no positive / negative values).
    """
    _check_batched(map, (2, 3, 4, 5), "map")
    map = _floating(map)
    if mode == "all":
        return normalize(map)
    if mode == "pos":
        part = map.clamp_min(0)
    elif mode == "neg":
        part = (-map).clamp_min(0)
    else:
        raise DisplayError(errors.unknown("rescale mode", str(mode), RESCALE_MODES))
    return _safe_divide(part, _sample_max(part))


def grayscale(map: torch.Tensor) -> torch.Tensor:
    """Luma of a 3-channel map, signed and unnormalized: (N, 3, H, W) -> (N, H, W).

    out = 0.299 * R + 0.587 * G + 0.114 * B (ITU-R BT.601). Not what the tutorial drew: see
    `abs_max_grayscale`.
    """
    _check_batched(map, (4,), "pixel map")
    _check_channels(map)
    map = _floating(map)
    weights = torch.tensor(LUMA_WEIGHTS, dtype=map.dtype, device=map.device)
    return torch.einsum("nchw,c->nhw", map, weights)


def abs_max_grayscale(map: torch.Tensor, percentile: float = 99.0) -> torch.Tensor:
    """The tutorial's grayscale (its `convert_to_grayscale`), used for its grayscale figures.

    g = sum_c |map_c|;  out = clip((g - min g) / (P99(g) - min g), 0, 1), P99 the 99th
    percentile of each sample (linear interpolation, as NumPy). Where P99 = min g (a map with
    under 1% non-zero pixels) max g replaces P99; a constant map gives zeros.
    """
    _check_batched(map, (4,), "pixel map")
    if not 0.0 < percentile <= 100.0:
        raise DisplayError(f"percentile must be in (0, 100], got {percentile}")
    gray = _floating(map).abs().sum(dim=1)
    work = gray if gray.dtype in (torch.float32, torch.float64) else gray.float()
    flat = work.flatten(1)
    lo = flat.amin(dim=1)
    top = torch.quantile(flat, percentile / 100.0, dim=1)
    top = torch.where(top > lo, top, flat.amax(dim=1))
    out = _safe_divide(work - _expand(lo, work), top - lo).clamp(0.0, 1.0)
    return out.to(gray.dtype)


def _check_channels(map: torch.Tensor) -> None:
    """Raise DisplayError unless a (N, C, H, W) map has 3 channels."""
    if map.shape[1] != 3:
        raise DisplayError(f"pixel map must have 3 channels (N, 3, H, W), got {tuple(map.shape)}")


def relu(map: torch.Tensor) -> torch.Tensor:
    """The positive part, as CAMs are displayed (Grad-CAM's ReLU).

    out = max(map, 0)
    """
    return map.clamp_min(0)


def upsample(
    map: torch.Tensor, size: int | tuple[int, int], mode: str = "bilinear"
) -> torch.Tensor:
    """Resize (N, h, w) maps to (N, H, W) by interpolation, align_corners=False.

    out = F.interpolate(map[:, None], size=(H, W), mode=mode)[:, 0]; bicubic can overshoot
    the input's range.
    """
    _check_batched(map, (3,), "map")
    if mode not in UPSAMPLE_MODES:
        raise DisplayError(errors.unknown("upsample mode", str(mode), UPSAMPLE_MODES))
    height_width = (size, size) if isinstance(size, int) else tuple(size)
    corners = False if mode in ("bilinear", "bicubic") else None
    out = F.interpolate(
        _floating(map)[:, None], size=height_width, mode=mode, align_corners=corners
    )
    return out[:, 0]
