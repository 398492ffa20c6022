"""What a map's display shows: the rule each method's map is drawn by, and percentile clipping.

The raw maps stay raw (the saved .npy / .npz hold them unchanged); only what is drawn changes:

- percentile clipping, as PAIR saliency and Captum's visualizer do: a map is scaled by the 99th
  percentile of |map| (not its maximum) and clipped, so a few extreme pixels do not turn the
  rest of the picture black or flat grey;
- a map whose sign means for / against the class (`MethodInfo.sign` "signed": occlusion,
  integrated gradients, gradient x input, gradient-SHAP) is drawn on a diverging colormap
  centred at zero; a map whose values are an expected score (RISE, "mean-relative") is drawn
  relative to its mean over the image; the others ("magnitude": the gradient family) as |map|,
  labelled so;
- the tutorial's pos / neg panels are each scaled by their own percentile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from cnnvis.errors import MethodError
from cnnvis.methods import get_method
from cnnvis.methods.facts import Sign
from cnnvis.postprocess import _check_batched, _expand, _floating, _safe_divide

if TYPE_CHECKING:
    from cnnvis.explanation import Explanation

PERCENTILE = 99.0
DIVERGING = "RdBu_r"  # positive red, negative blue, zero white


def _quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """The q-quantile of each sample (N, ...) -> (N,), linear interpolation as NumPy."""
    flat = values.flatten(1)
    work = flat if flat.dtype in (torch.float32, torch.float64) else flat.float()
    return torch.quantile(work, q, dim=1).to(values.dtype)


def clip_percentile(map: torch.Tensor, percentile: float = PERCENTILE) -> torch.Tensor:
    """A signed map scaled to [-1, 1] by the percentile of |map|, per sample; zero stays zero.

    out = clip(map / P(|map|), -1, 1); where P is 0 (a map with under 1% non-zero pixels) the
    maximum of |map| replaces it; a constant zero or non-finite map gives zeros.
    """
    _check_batched(map, (2, 3, 4, 5), "map")
    map = _floating(map)
    size = map.abs()
    bound = _quantile(size, percentile / 100.0)
    bound = torch.where(bound > 0, bound, size.flatten(1).amax(dim=1))
    return _safe_divide(map, bound).clamp(-1.0, 1.0)


def clip_range(map: torch.Tensor, percentile: float = PERCENTILE) -> torch.Tensor:
    """Min-max to [0, 1] between the (100 - p)th and the p-th percentiles, clipped, per sample.

    The tutorial's min-max ("all") with its ends taken at percentiles; where they coincide the
    minimum and maximum replace them (a constant map gives zeros).
    """
    _check_batched(map, (2, 3, 4, 5), "map")
    map = _floating(map)
    lo, hi = _quantile(map, 1 - percentile / 100.0), _quantile(map, percentile / 100.0)
    flat = map.flatten(1)
    narrow = hi <= lo
    lo = torch.where(narrow, flat.amin(dim=1), lo)
    hi = torch.where(narrow, flat.amax(dim=1), hi)
    return _safe_divide(map - _expand(lo, map), hi - lo).clamp(0.0, 1.0)


def part(map: torch.Tensor, sign: str, percentile: float = PERCENTILE) -> torch.Tensor:
    """The positive ("pos") or negative ("neg") part of a map in [0, 1], scaled by its own
    percentile: clip(max(±map, 0) / P(max(±map, 0)), 0, 1) (max replaces P where P is 0)."""
    one_side = map.clamp_min(0) if sign == "pos" else (-map).clamp_min(0)
    return clip_percentile(one_side, percentile)


def centred(map: torch.Tensor) -> torch.Tensor:
    """A map minus its mean over each sample: mean(out) = 0 (RISE's map relative to its expected
    score)."""
    _check_batched(map, (2, 3, 4, 5), "map")
    map = _floating(map)
    finite = torch.nan_to_num(map, nan=0.0, posinf=0.0, neginf=0.0)
    return map - _expand(finite.flatten(1).mean(dim=1), map)


def signed_2d(pixel_maps: torch.Tensor, sign: Sign) -> torch.Tensor:
    """One signed value per pixel (N, H, W) from pixel maps (N, 3, H, W): the sum over R, G, B
    (an attribution's total at the pixel, as Captum's visualizer); minus its mean for a
    mean-relative map."""
    _check_batched(pixel_maps, (4,), "pixel map")
    total = _floating(pixel_maps).sum(dim=1)
    return centred(total) if sign == "mean-relative" else total


def signed_values(map2d: torch.Tensor, percentile: float = PERCENTILE) -> torch.Tensor:
    """Colormap inputs in [0, 1] for signed maps (N, H, W): 0.5 + 0.5 * clip_percentile(map), so
    zero is the colormap's centre."""
    return 0.5 + 0.5 * clip_percentile(map2d, percentile)


def method_sign(explanation: Explanation) -> Sign:
    """How an explanation's map reads (`MethodInfo.sign`): a wrapping method (SmoothGrad) reads
    as its base; a method the registry does not know as "magnitude"."""
    try:
        info = get_method(explanation.method)
        if info.wraps_method:
            info = get_method(str(explanation.params.get("base", info.needs.base_methods[0])))
    except MethodError:  # a custom name or base: the safe reading (|map|)
        return "magnitude"
    return info.sign


def main_mode(explanation: Explanation) -> str:
    """The display that shows what the map says: "overlay" for a CAM, "signed" for a pixel map
    with a meaningful sign, "gray" (|map|) for the others."""
    if explanation.kind == "cam":
        return "overlay"
    return "gray" if method_sign(explanation) == "magnitude" else "signed"


def mode_label(explanation: Explanation, mode: str) -> str:
    """The words a panel's title gives its display mode: "|map|", "signed"; for a mean-relative
    map (RISE) "map − mean", "above mean", "below mean"."""
    relative = method_sign(explanation) == "mean-relative"
    words = {"gray": "|map|", "signed": "map − mean" if relative else "signed"}
    if relative:
        words |= {"pos": "above mean", "neg": "below mean"}
    return words.get(mode, mode)
