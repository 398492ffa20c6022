"""Maps and images as pictures: colormaps, tensors to NumPy arrays, and RGB PIL images (the
input, a heatmap, an overlay, a pixel-space map, one map of an explanation)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
import torch
from matplotlib.colors import Colormap
from PIL import Image

from cnnvis import errors
from cnnvis.methods.facts import Sign
from cnnvis.postprocess import (
    RESCALE_MODES,
    DisplayError,
    abs_max_grayscale,
    normalize,
    relu,
    upsample,
)

from .display import DIVERGING, centred, clip_range, method_sign, part, signed_2d, signed_values

if TYPE_CHECKING:
    from cnnvis.explanation import Explanation

PIXEL_MODES: tuple[str, ...] = (*RESCALE_MODES, "gray", "signed")
CAM_MODES: tuple[str, ...] = ("overlay", "heatmap", "signed")
DIVERGING_CMAP = DIVERGING


# colormaps and arrays


def colormap(name: str) -> Colormap:
    """The matplotlib colormap called `name`; DisplayError listing close names if none is."""
    if not isinstance(name, str) or name not in matplotlib.colormaps:
        raise DisplayError(errors.unknown("colormap", str(name), sorted(matplotlib.colormaps)))
    return matplotlib.colormaps[name]


def cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A detached float32 CPU copy (a map with NaN/inf is later drawn as blank)."""
    return tensor.detach().to("cpu", torch.float32)


def image_array(image: torch.Tensor) -> np.ndarray:
    """A [0, 1] image tensor (3, H, W), (1, H, W) or (1, 3, H, W) as float32 (H, W, 3)."""
    if not isinstance(image, torch.Tensor):
        raise DisplayError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise DisplayError(f"image must be (3, H, W) in [0, 1], got {tuple(image.shape)}")
    array = torch.nan_to_num(cpu_copy(image)).clamp(0.0, 1.0).expand(3, -1, -1)
    return array.permute(1, 2, 0).numpy()


def _map2d(map2d: torch.Tensor) -> torch.Tensor:
    """A single map (H, W) or (1, H, W) as a float32 CPU tensor (H, W)."""
    if not isinstance(map2d, torch.Tensor):
        raise DisplayError(f"map must be a torch.Tensor, got {type(map2d).__name__}")
    if map2d.dim() == 3 and map2d.shape[0] == 1:
        map2d = map2d[0]
    if map2d.dim() != 2:
        raise DisplayError(f"map must be one 2-d map (H, W), got {tuple(map2d.shape)}")
    return cpu_copy(map2d)


def pixel_map_batch(map3d: torch.Tensor) -> torch.Tensor:
    """A single pixel map (3, H, W) or (1, 3, H, W) as a float32 CPU batch (1, 3, H, W)."""
    if not isinstance(map3d, torch.Tensor):
        raise DisplayError(f"map must be a torch.Tensor, got {type(map3d).__name__}")
    if map3d.dim() == 3:
        map3d = map3d[None]
    if map3d.dim() != 4 or map3d.shape[:2] != (1, 3):
        raise DisplayError(f"pixel map must be (3, H, W), got {tuple(map3d.shape)}")
    return cpu_copy(map3d)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8 RGB: round(255 * clip(x, 0, 1)), NaN as 0."""
    return np.round(np.clip(np.nan_to_num(array), 0.0, 1.0) * 255.0).astype(np.uint8)


def _colorize(values: np.ndarray, cmap: str) -> np.ndarray:
    """[0, 1] values (H, W) through a colormap to float RGB (H, W, 3), alpha dropped."""
    return colormap(cmap)(values)[..., :3]


def _display_values(map2d: torch.Tensor, signed: bool) -> np.ndarray:
    """Colormap inputs in [0, 1]: min-max if unsigned; signed, 0.5 + map / (2 P99(|map|)),
    clipped (zero at the centre; see `display.clip_percentile`)."""
    m = _map2d(map2d)[None]
    values = signed_values(m) if signed else normalize(m)
    return values[0].numpy()


# PIL images


def to_pil(image_tensor: torch.Tensor) -> Image.Image:
    """A [0, 1] image tensor (3, H, W) as an RGB PIL image: round(255 * clip(x, 0, 1))."""
    return Image.fromarray(_to_uint8(image_array(image_tensor)))


def heatmap(map2d: torch.Tensor, cmap: str | None = None, signed: bool = False) -> Image.Image:
    """One map (H, W) through a colormap, as an RGB PIL image.

    unsigned: cmap((m - min) / (max - min)), default "jet"; signed: a diverging cmap centred on
    zero, cmap(0.5 + m / (2 P99(|m|))) clipped to [0, 1], default "RdBu_r" (the maximum
    replaces P99 for a map with under 1% non-zero pixels). A constant map is drawn as cmap(0)
    unsigned and as the centre colour cmap(0.5) signed.
    """
    name = cmap or (DIVERGING_CMAP if signed else "jet")
    rgb = _colorize(_display_values(map2d, signed), name)
    return Image.fromarray(_to_uint8(rgb))


def overlay(
    image: torch.Tensor,
    map2d: torch.Tensor,
    alpha: float = 0.5,
    cmap: str = "jet",
    signed: bool = False,
) -> Image.Image:
    """A heatmap blended over the image, at the image's size, as an RGB PIL image.

    out = (1 - alpha) * image + alpha * heatmap(map); a map of another size is first resized
    bilinearly (align_corners=False) to the image.
    """
    if not 0.0 <= alpha <= 1.0:
        raise DisplayError(f"alpha must be in [0, 1], got {alpha}")
    picture = image_array(image)
    m = _map2d(map2d)
    if tuple(m.shape) != picture.shape[:2]:
        m = upsample(m[None], picture.shape[:2])[0]
    heat = _colorize(_display_values(m, signed), cmap)
    return Image.fromarray(_to_uint8((1.0 - alpha) * picture + alpha * heat))


def pixel_map_image(
    map3d: torch.Tensor, mode: str = "all", sign: Sign = "magnitude"
) -> Image.Image:
    """A pixel-space map (3, H, W) as an RGB PIL image, in one of the tutorial's modes or signed.

    See `pixel_display`; `sign` is how the map reads (`MethodInfo.sign`).
    """
    return to_pil(pixel_display(pixel_map_batch(map3d), mode, sign)[0])


def pixel_display(batch: torch.Tensor, mode: str, sign: Sign = "magnitude") -> torch.Tensor:
    """Display version (N, 3, H, W) in [0, 1] of pixel maps (N, 3, H, W) for one mode.

    "all": the tutorial's min-max in colour (channels as R, G, B), its ends at the 1st and 99th
    percentiles; "pos" / "neg": the positive / negative part, each scaled by its own 99th
    percentile; "gray": `postprocess.abs_max_grayscale`, the tutorial's |map| grayscale;
    "signed": the sum over R, G, B on the diverging colormap, zero at its centre, clipped at
    the 99th percentile of |map|. A "mean-relative" map (RISE) is taken minus its mean first.
    """
    if mode == "gray":
        return abs_max_grayscale(batch)[:, None].expand(-1, 3, -1, -1)
    if mode == "signed":
        values = signed_values(signed_2d(batch, sign)).numpy()
        rgb = _colorize(values, DIVERGING)
        return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(0, 3, 1, 2)
    if mode in RESCALE_MODES:
        base = centred(batch) if sign == "mean-relative" else batch
        return clip_range(base) if mode == "all" else part(base, mode)
    raise DisplayError(errors.unknown("pixel display mode", str(mode), PIXEL_MODES))


# one map of an explanation


def check_index(explanation: Explanation, index: int) -> None:
    """Refuse an image index the explanation does not have (DisplayError)."""
    if not -len(explanation) <= index < len(explanation):
        raise DisplayError(
            f"index {index} is out of range for {explanation.method!r}, "
            f"which explains {len(explanation)} image(s)"
        )


def map_image(
    explanation: Explanation, index: int = 0, cmap: str | None = None, mode: str | None = None
) -> Image.Image:
    """One map of an explanation as an RGB PIL image at the input's resolution.

    CAM-style maps: mode "overlay" (default; ReLU, then over the image) or "heatmap" (ReLU,
    min-max), both in `cmap` (default "jet"), or "signed" (the raw map in a diverging `cmap`
    centred on zero, default "RdBu_r"). Pixel-space maps: "all" (default), "pos", "neg", "gray"
    (|map|) or "signed" (diverging, zero at the centre; RISE minus its mean), as
    `pixel_map_image` with the method's `sign`.
    """
    check_index(explanation, index)
    m, image = explanation.map[index], explanation.images[index]
    if explanation.kind == "pixel":
        return pixel_map_image(m, mode or "all", method_sign(explanation))
    mode = mode or "overlay"
    if mode == "overlay":
        return overlay(image, relu(cpu_copy(m)), cmap=cmap or "jet")
    if mode == "heatmap":
        return heatmap(relu(cpu_copy(m)), cmap or "jet")
    if mode == "signed":
        return heatmap(m, cmap, signed=True)
    raise DisplayError(errors.unknown("CAM display mode", str(mode), CAM_MODES))


def save_map_png(
    explanation: Explanation,
    index: int,
    path: str | Path,
    cmap: str | None = None,
    mode: str | None = None,
) -> Path:
    """Write one map as a PNG at the input's resolution (see `map_image` for the modes)."""
    image = map_image(explanation, index, cmap, mode)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path
