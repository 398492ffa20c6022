"""Dataset examples: the image patches that excite a channel most (Zeiler & Fergus 2014).

Every image goes through the model once (batched, no gradients); each image's strongest
position of the channel is mapped back to the input through the layer's receptive field, and
the k strongest patches are kept. The receptive field is measured, not derived from the
architecture: the stride from the ratio of input to activation size, the extent and centre
from the support of one unit's input gradient (the pixels that can change it at all).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ImageError, LayerError
from ..files import image_files as files_in
from ..forwards import device_dtype
from ..model import LoadedModel, as_loaded
from ..targets import UnitTarget
from .objective import FeatureError, Forward, hooked_forward

if TYPE_CHECKING:
    from ..images import ImageSource

log = logging.getLogger(__name__)

GREY = 0.5


@dataclass(frozen=True)
class ReceptiveField:
    """Where the units of a layer look in an input of `input_size` pixels square.

    Unit (y, x) of the layer's (height, width) grid is centred at input pixel
    (offset[0] + y * stride[0], offset[1] + x * stride[1]) and sees a window of `size` pixels
    (its gradient support; `size == input_size` when it sees the whole input)."""

    layer: str
    input_size: int
    grid: tuple[int, int]
    stride: tuple[float, float]
    offset: tuple[float, float]
    size: int

    def box(self, y: int, x: int, size: int | None = None) -> tuple[int, int, int, int]:
        """(top, left, bottom, right), bottom/right exclusive, of the window around unit (y, x);
        it may reach outside the image."""
        side = self.size if size is None else size
        cy = self.offset[0] + y * self.stride[0]
        cx = self.offset[1] + x * self.stride[1]
        top, left = round(cy - (side - 1) / 2), round(cx - (side - 1) / 2)
        return top, left, top + side, left + side


@dataclass
class TopPatches:
    """The k patches (k, 3, P, P) in [0, 1] that excite `layer:channel` most, strongest first,
    with each one's activation (the channel's maximum over its image), source, unit position
    and input-space box (top, left, bottom, right)."""

    layer: str
    channel: int
    patches: torch.Tensor
    activations: torch.Tensor
    sources: list[str]
    positions: list[tuple[int, int]]
    boxes: list[tuple[int, int, int, int]]
    receptive_field: ReceptiveField
    images_seen: int

    def __len__(self) -> int:
        return len(self.sources)


def receptive_field(
    model: nn.Module | LoadedModel, layer: str, input_size: int | None = None, seed: int = 0
) -> ReceptiveField:
    """Measure the receptive field of `layer` (see the module docstring): one forward and one
    backward of two random images, gradient w.r.t. the input only."""
    loaded = as_loaded(model)
    size = input_size or loaded.preprocess.crop_size
    device, dtype = device_dtype(loaded.module)
    noise = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(seed))
    x = noise.to(device, dtype).requires_grad_(True)
    with hooked_forward(loaded.module, layer) as forward:
        act = _spatial(forward(loaded.preprocess.normalize(x)), layer)
        h, w = act.shape[2:]
        (grad,) = torch.autograd.grad(act[:, :, h // 2, w // 2].abs().sum(), [x])
    support = grad.abs().sum(dim=(0, 1)) > 0
    rows = support.any(dim=1).nonzero().flatten().tolist()
    cols = support.any(dim=0).nonzero().flatten().tolist()
    if not rows:
        raise LayerError(f"layer {layer!r} does not depend on its input; cannot map it back")
    stride = (size / h, size / w)
    extent = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    if rows[0] > 0 and cols[0] > 0 and rows[-1] < size - 1 and cols[-1] < size - 1:
        centre = ((rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2)
    else:  # the window is cut by the border: the centre of the gradient's mass instead
        centre = _centroid(grad.abs().sum(dim=(0, 1)))
    offset = (centre[0] - (h // 2) * stride[0], centre[1] - (w // 2) * stride[1])
    return ReceptiveField(layer, size, (h, w), stride, offset, extent)


def top_patches(
    model: nn.Module | LoadedModel,
    layer: str,
    channel: int,
    images: ImageSource | Sequence[ImageSource] | torch.Tensor,
    k: int = 9,
    *,
    batch_size: int = 16,
    patch_size: int | None = None,
) -> TopPatches:
    """The `k` image patches that activate channel `channel` of `layer` most.

    `images`: a folder (its image files, sorted by name), a list of anything `load_image`
    takes (paths, "sample:NAME", PIL images, arrays), or [0, 1] tensors (N, 3, H, W).
    Images are preprocessed like the model's inputs (resize, centre crop). Each image gives
    one patch: the receptive field (or `patch_size` pixels) around its channel's maximum,
    grey where it reaches past the border.
    """
    loaded = as_loaded(model)
    if k < 1 or batch_size < 1:
        raise FeatureError(f"k and batch_size must be >= 1, got k={k}, batch_size={batch_size}")
    sources, pictures = _pictures(loaded, images)
    unit = UnitTarget(layer, channel, "max")
    size = pictures.shape[-1]
    field = receptive_field(loaded, layer, size)
    side = min(patch_size or field.size, size)
    values, positions = _maxima(loaded, unit, pictures, batch_size)
    order: list[int] = values.argsort(descending=True, stable=True)[:k].tolist()
    if len(order) < k:
        log.warning("only %d images for the top %d patches", len(order), k)
    boxes = [field.box(*positions[i], side) for i in order]
    patches = torch.stack([_crop(pictures[i], box) for i, box in zip(order, boxes, strict=True)])
    return TopPatches(
        layer=layer,
        channel=channel,
        patches=patches,
        activations=values[order],
        sources=[sources[i] for i in order],
        positions=[positions[i] for i in order],
        boxes=boxes,
        receptive_field=field,
        images_seen=len(sources),
    )


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files directly in `folder`, sorted by name."""
    path = Path(folder)
    if not path.is_dir():
        raise ImageError(f"{path} is not a folder; pass a folder of images")
    return [p for p in files_in(path, recursive=False) if p.is_file()]


# ----------------------------------------------------------------------------- helpers


def _pictures(
    model: LoadedModel, images: ImageSource | Sequence[ImageSource] | torch.Tensor
) -> tuple[list[str], torch.Tensor]:
    """(names, [0, 1] pictures (N, 3, S, S)) as the model sees them; unreadable files of a
    folder are skipped with a warning."""
    if isinstance(images, torch.Tensor):
        batch = images[None] if images.dim() == 3 else images
        if batch.dim() != 4 or batch.shape[1] != 3 or batch.shape[-1] != batch.shape[-2]:
            raise ImageError(
                f"image tensors must be (N, 3, S, S) in [0, 1], got {tuple(images.shape)}"
            )
        return [f"image {i}" for i in range(len(batch))], batch.detach().float().cpu()
    from ..images import load_image

    folder = images if isinstance(images, str | os.PathLike) and Path(images).is_dir() else None
    items: list[ImageSource] = list(image_files(folder)) if folder is not None else _as_list(images)
    names, pictures = [], []
    for item in items:
        try:
            pictures.append(model.preprocess.to_display(load_image(item)))
        except ImageError as error:
            if folder is None:
                raise
            log.warning("skipping %s: %s", item, error)
            continue
        names.append(str(item))
    if not pictures:  # a folder of unreadable files, or an empty list (bad items raise above)
        shown = str(images)
        raise FeatureError(f"no readable images in {shown}; give a folder of PNG/JPEG files")
    return names, torch.stack(pictures)


def _as_list(images: ImageSource | Sequence[ImageSource]) -> list[ImageSource]:
    one = str | os.PathLike | bytes | bytearray | memoryview  # sequences that are one image
    if isinstance(images, Sequence) and not isinstance(images, one):
        return list(images)
    return [images]


def _maxima(
    model: LoadedModel, unit: UnitTarget, pictures: torch.Tensor, batch_size: int
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Each picture's maximum of the unit's channel, and where it is in the layer's grid."""
    device, dtype = device_dtype(model.module)
    values, positions = [], []
    with hooked_forward(model.module, unit.layer) as forward, torch.no_grad():
        for start in range(0, len(pictures), batch_size):
            batch = pictures[start : start + batch_size].to(device, dtype)
            act = _spatial(_run(forward, model.preprocess.normalize(batch)), unit.layer)
            unit.scores(act)  # checks the channel, with a clear message
            flat = act[:, unit.channel].flatten(1)
            best, where = flat.max(dim=1)
            width = act.shape[3]
            values.append(best.float().cpu())
            positions += [(int(i) // width, int(i) % width) for i in where]
    return torch.cat(values), positions


def _run(forward: Forward, x: torch.Tensor) -> torch.Tensor:
    out = forward(x)
    forward.stop_at_layer = forward.calls == 1  # after the first batch: skip what follows
    return out


def _centroid(mass: torch.Tensor) -> tuple[float, float]:
    total = mass.sum()
    ys = torch.arange(mass.shape[0], dtype=mass.dtype, device=mass.device)
    xs = torch.arange(mass.shape[1], dtype=mass.dtype, device=mass.device)
    return float((mass.sum(1) * ys).sum() / total), float((mass.sum(0) * xs).sum() / total)


def _spatial(act: torch.Tensor, layer: str) -> torch.Tensor:
    if act.dim() != 4:
        raise LayerError(
            f"layer {layer!r} has output shape {tuple(act.shape)}, not (N, C, H, W); top "
            "patches need a convolutional layer (see `cnnvis layers`)"
        )
    return act


def _crop(picture: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """picture[:, top:bottom, left:right], grey outside the picture."""
    top, left, bottom, right = box
    _, h, w = picture.shape
    pad = (max(0, -left), max(0, right - w), max(0, -top), max(0, bottom - h))
    padded = F.pad(picture, pad, value=GREY)
    top, left = top + pad[2], left + pad[0]
    return padded[:, top : top + bottom - box[0], left : left + right - box[1]]
