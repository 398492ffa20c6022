"""Pixel arrays and image modes to 8-bit RGB: alpha over white, 16-bit and wide modes scaled,
float [0, 1] and bool arrays to uint8, channels-first arrays to channels-last."""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from .errors import ImageError

log = logging.getLogger("cnnvis.images")
WHITE = (255, 255, 255)


def over_white(image: Image.Image) -> Image.Image:
    """Composite an image with alpha (or a transparent palette) over white."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*WHITE, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def scale_16bit(values: np.ndarray) -> np.ndarray:
    """16-bit values (0..65535) -> uint8 (0..255), rounded."""
    wide = np.clip(values.astype(np.int64), 0, 65535)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def scale_wide(values: np.ndarray, mode: str) -> np.ndarray:
    """32-bit int or float pixels -> uint8, guessing the range from the data.

    Floats within [0, 1] are scaled by 255; values within [0, 255] are kept; integers within
    [0, 65535] are 16-bit; anything else is stretched min-max (logged).
    """
    values = values.astype(np.float64)
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if mode == "F" and low >= 0 and high <= 1:
        return float_unit_to_uint8(values)
    if low >= 0 and high <= 255:
        return np.clip(np.nan_to_num(values), 0, 255).round().astype(np.uint8)
    if mode == "I" and low >= 0 and high <= 65535:
        return scale_16bit(values)
    log.warning("pixel values span [%g, %g]; stretching them to 0..255", low, high)
    span = high - low or 1.0
    return float_unit_to_uint8((np.nan_to_num(values, nan=low) - low) / span)


def float_unit_to_uint8(values: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] -> uint8, rounded."""
    return (np.clip(np.nan_to_num(values), 0.0, 1.0) * 255).round().astype(np.uint8)


def gray_array_to_rgb(gray: np.ndarray) -> Image.Image:
    """An HxW uint8 array -> an RGB image."""
    return Image.fromarray(np.ascontiguousarray(gray), mode="L").convert("RGB")


def channels_last_array(array: np.ndarray) -> np.ndarray:
    """Check an array's shape: HxW or HxWxC with C in 1, 3, 4."""
    if array.ndim == 2 and min(array.shape) > 0:
        return array
    if array.ndim == 3 and array.shape[2] in (1, 3, 4) and min(array.shape[:2]) > 0:
        return array
    hint = ""
    if array.ndim == 3 and array.shape[0] in (1, 3, 4):
        hint = "; it looks channels-first: pass array.transpose(1, 2, 0)"
    raise ImageError(
        f"an image array must be HxW or HxWxC with C in 1, 3, 4; got shape {array.shape}{hint}"
    )


def array_to_uint8(array: np.ndarray) -> np.ndarray:
    """Pixel values of a supported dtype -> uint8."""
    kind = array.dtype.kind
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return scale_16bit(array)
    if kind == "f":
        if not np.isfinite(array).all():
            raise ImageError("the image array contains NaN or infinity; clean it first")
        if array.min() < 0 or array.max() > 1:
            raise ImageError(
                f"a float image array must lie in [0, 1]; got [{array.min():g}, {array.max():g}] "
                "(divide 0..255 data by 255, or pass it as uint8)"
            )
        return float_unit_to_uint8(array)
    if kind in "iu" and array.size and array.min() >= 0 and array.max() <= 255:
        return array.astype(np.uint8)
    raise ImageError(
        f"unsupported image array dtype {array.dtype} (or values outside 0..255); "
        "pass uint8, uint16, bool, or float in [0, 1]"
    )
