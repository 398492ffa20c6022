"""A model source's preprocessing read into a `Preprocess`: torchvision weights, timm configs."""

from __future__ import annotations

import logging
import math
from typing import Any

from torch import nn
from torchvision.transforms import InterpolationMode

from ..errors import ModelError
from ..model import IMAGENET_MEAN, IMAGENET_STD, Preprocess

log = logging.getLogger(__name__)

_TIMM_INTERPOLATION = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
    "lanczos": InterpolationMode.LANCZOS,
    "box": InterpolationMode.BOX,
    "hamming": InterpolationMode.HAMMING,
}


def weights_preprocess(weights: Any) -> Preprocess:
    """Preprocess from a torchvision weights enum member's `transforms()` (ImageClassification)."""
    if weights is None:
        return Preprocess()
    t = weights.transforms()
    crop = _first(getattr(t, "crop_size", 224))
    resize = _first(getattr(t, "resize_size", 256))
    return Preprocess(
        resize_size=int(resize),
        crop_size=int(crop),
        mean=_three(getattr(t, "mean", IMAGENET_MEAN)),
        std=_three(getattr(t, "std", IMAGENET_STD)),
        interpolation=getattr(t, "interpolation", InterpolationMode.BILINEAR),
    )


def timm_preprocess(module: nn.Module) -> Preprocess:
    """Preprocess from `timm.data.resolve_data_config` of a timm model."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=module)
    _, height, width = cfg["input_size"]
    if height != width:
        log.warning("timm input size %sx%s is not square; cnnvis crops %s", height, width, height)
    if cfg.get("crop_mode", "center") != "center":
        log.debug("timm crop_mode %r: cnnvis uses a center crop", cfg["crop_mode"])
    crop_pct = float(cfg.get("crop_pct") or 1.0)
    return Preprocess(
        resize_size=math.floor(height / crop_pct),
        crop_size=int(height),
        mean=_three(cfg["mean"]),
        std=_three(cfg["std"]),
        interpolation=_TIMM_INTERPOLATION.get(cfg.get("interpolation"), InterpolationMode.BILINEAR),
    )


def _first(value: Any) -> Any:
    """The first item of a list/tuple size, or the value itself."""
    return value[0] if isinstance(value, list | tuple) else value


def _three(values: Any) -> tuple[float, float, float]:
    """A per-channel statistic as three floats (a single value is repeated)."""
    values = [float(v) for v in values]
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise ModelError(f"cnnvis needs 3-channel models; this one normalizes {len(values)}")
    return values[0], values[1], values[2]
