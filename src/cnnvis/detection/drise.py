"""D-RISE: black-box saliency for one detection of any detector (Petsiuk et al., "Black-box
Explanation of Object Detectors via Saliency Maps", CVPR 2021).

The image is seen through N random smooth masks M_i (RISE's: a coarse grid of cells kept with
probability p, upsampled bilinearly and shifted by a random fraction of a cell). For each masked
image the detector's detections d_j are compared with the target detection d_t by

    s(d_t, d_j) = IoU(L_t, L_j) * cos(P_t, P_j) * O_j

(L: box, P: class-probability vector, O: objectness), each mask is weighted by its best match
w_i = max_j s(d_t, d_j) (0 when nothing is detected), and the map is S = (1/N) sum_i w_i M_i.

Detectors differ in what they give:
- class probabilities (K, C) (key "probabilities"): used as P. Without them P_j is the one-hot
  vector of the label times the score; the cosine of two such vectors is 1 for the same label
  and 0 otherwise, so the score drops out of it, and then the detection's score stands in for
  the objectness O_j (torchvision's detectors give neither probabilities nor objectness).
- objectness (K,) (key "objectness", YOLO-style): used as O; else the score as above, or 1 when
  class probabilities are given.
- a target given as a user box and label (`BoxTarget(box=..., label=...)`) has P_t one-hot.

Batched: masked copies of the image go through the detector `batch_size` at a time (a
torchvision detector takes the batch as a list of images); masks are drawn from `seed` with a
generator of their own, so a map is reproducible and the same masks can be drawn again with
`draw_masks`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import MethodError, TargetError
from ..forwards import guarded_forward
from ..model import LoadedModel, as_loaded, compute_model
from .box_target import BoxTarget
from .outputs import Detections, box_iou, read_detections

log = logging.getLogger(__name__)


def drise(
    detector: nn.Module | LoadedModel,
    image: Tensor,
    target_box: int | BoxTarget,
    masks: int = 1000,
    *,
    grid: int = 16,
    probability: float = 0.5,
    batch_size: int = 32,
    fill: float = 0.0,
    seed: int = 0,
) -> Tensor:
    """The D-RISE saliency map (H, W) of one detection (see the module's docstring).

    `image`: (3, H, W) or (1, 3, H, W), as the detector takes it (torchvision's: [0, 1]).
    `target_box`: the index of a detection on the unmasked image (`box:0` is the first), or a
    `BoxTarget` (by index, or a box and label). `masks`: how many; `grid`: cells per side of a
    mask; `probability`: of keeping a cell; `fill`: the value masked pixels take; `seed`: of the
    masks. The map is raw: its level includes the mean weight times the mean mask.
    """
    x = _one_image(image)
    _check(masks, grid, probability, batch_size)
    module = compute_model(as_loaded(detector).module)
    box, label, probs = _target_detection(module, x, target_box)
    height, width = x.shape[-2:]
    draw = draw_masks(masks, (height, width), grid=grid, probability=probability, seed=seed)
    saliency = torch.zeros(height, width, dtype=x.dtype, device=x.device)
    with guarded_forward(module, grad=False, inference=True, like=x):
        for start in range(0, masks, batch_size):
            chunk = draw.render(start, start + batch_size).to(x)
            masked = x * chunk[:, None] + fill * (1 - chunk[:, None])
            found = read_detections(module(masked))
            weights = torch.stack([best_similarity(box, label, probs, d) for d in found])
            saliency += torch.einsum("n,nhw->hw", weights.to(x), chunk)
            log.debug("D-RISE: %d of %d masks", min(start + batch_size, masks), masks)
    return saliency / masks


def _one_image(image: Tensor) -> Tensor:
    if not isinstance(image, Tensor):
        raise TargetError(
            f"D-RISE takes the image as a tensor (3, H, W), got {type(image).__name__}"
        )
    x = image[0] if image.dim() == 4 and image.shape[0] == 1 else image
    if x.dim() != 3:
        raise TargetError(
            f"D-RISE explains one image (3, H, W) or (1, 3, H, W), got shape {tuple(image.shape)}"
        )
    return x.detach()


def _check(masks: int, grid: int, probability: float, batch_size: int) -> None:
    if masks < 1 or grid < 1 or batch_size < 1:
        raise MethodError(
            f"D-RISE needs masks, grid and batch_size >= 1 (got {masks}, {grid}, {batch_size})"
        )
    if not 0.0 < probability < 1.0:
        raise MethodError(f"D-RISE's probability of keeping a cell is in (0, 1), got {probability}")


def _target_detection(
    module: nn.Module, x: Tensor, target: int | BoxTarget
) -> tuple[Tensor, int, Tensor | None]:
    """The target's box (4,), label and class-probability vector (None: one-hot)."""
    if isinstance(target, int) and not isinstance(target, bool):
        target = BoxTarget(target)
    if not isinstance(target, BoxTarget):
        raise TargetError(
            f"D-RISE explains a box: an index or a BoxTarget, got {type(target).__name__}"
        )
    given = target.given
    if given is not None:
        boxes, labels = given
        if boxes.shape[0] != 1:
            raise TargetError(f"D-RISE explains one box at a time, got {boxes.shape[0]}")
        return boxes[0].to(x), int(labels[0]), None
    with guarded_forward(module, grad=False, like=x):
        found = read_detections(module(x[None]))[0].detach()
    (boxes, labels), index = target.references([found])[0], int(target.index or 0)
    probs = None if found.probabilities is None else found.probabilities[index]
    return boxes[0].to(x), int(labels[0]), probs


def best_similarity(box: Tensor, label: int, probs: Tensor | None, found: Detections) -> Tensor:
    """max_j IoU(box, L_j) * cos(P_t, P_j) * O_j over one masked image's detections (0 if
    none); P_t is `probs`, or one-hot of `label` when None."""
    if len(found) == 0:
        return found.scores.new_zeros(())
    iou = box_iou(box[None].to(found.boxes), found.boxes)[0]
    similarity = iou * class_cosine(label, probs, found) * _objectness(found)
    return similarity.max().clamp(min=0)


def class_cosine(label: int, probs: Tensor | None, found: Detections) -> Tensor:
    """cos(P_t, P_j) for every detection j, with one-hot vectors where probabilities are absent
    (the cosine of one-hot vectors, whatever their scale, is label equality)."""
    theirs = found.probabilities
    dtype = found.scores.dtype
    if theirs is not None and probs is not None:
        cosine: Tensor = F.cosine_similarity(theirs, probs[None].to(theirs), dim=1)
        return cosine
    if theirs is not None:  # P_t one-hot: P_j[label] / |P_j|
        if not 0 <= label < theirs.shape[1]:
            return found.scores.new_zeros(len(found))
        column: Tensor = theirs[:, label] / theirs.norm(dim=1).clamp(min=1e-12)
        return column.to(dtype)
    if probs is not None:  # P_j one-hot: P_t[label_j] / |P_t|
        inside = (found.labels >= 0) & (found.labels < probs.numel())
        picked = probs[found.labels.clamp(0, probs.numel() - 1)].to(dtype)
        scale = probs.norm().clamp(min=1e-12).to(dtype)
        kept: Tensor = torch.where(inside, picked, torch.zeros_like(picked)) / scale
        return kept
    return (found.labels == label).to(dtype)


def _objectness(found: Detections) -> Tensor:
    if found.objectness is not None:
        return found.objectness
    if found.probabilities is None:
        return found.scores  # stands in for it: the one-hot cosine drops the score
    return torch.ones_like(found.scores)


@dataclass(frozen=True)
class MaskDraw:
    """RISE's random masks before upsampling: `grids` (N, g, g) of cells kept (1) with the
    probability, each mask's `shifts` (N, 2) in pixels in [0, cell), the `cell` size and the
    image `size`; `render` makes the masks themselves, a slice at a time."""

    grids: Tensor
    shifts: Tensor
    cell: tuple[int, int]
    size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.grids.shape[0])

    def render(self, start: int = 0, stop: int | None = None) -> Tensor:
        """Masks [start, stop) as (n, H, W): each grid upsampled bilinearly to (g + 1) cells
        per side and cropped at its shift to the image's size."""
        grids, shifts = self.grids[start:stop], self.shifts[start:stop]
        count, grid = grids.shape[0], grids.shape[1]
        (cell_h, cell_w), (height, width) = self.cell, self.size
        up = F.interpolate(
            grids[:, None], size=((grid + 1) * cell_h, (grid + 1) * cell_w), mode="bilinear"
        )[:, 0]
        rows = shifts[:, 0, None] + torch.arange(height)[None]  # (n, H)
        cols = shifts[:, 1, None] + torch.arange(width)[None]  # (n, W)
        return up[torch.arange(count)[:, None, None], rows[:, :, None], cols[:, None, :]]


def draw_masks(
    count: int, size: tuple[int, int], *, grid: int = 16, probability: float = 0.5, seed: int = 0
) -> MaskDraw:
    """The random masks `drise` uses with these settings, drawn from a generator of their own
    seeded with `seed` (the global random state is left alone)."""
    generator = torch.Generator().manual_seed(seed)
    grids = (torch.rand(count, grid, grid, generator=generator) < probability).float()
    cell = (math.ceil(size[0] / grid), math.ceil(size[1] / grid))
    dy = torch.randint(0, cell[0], (count,), generator=generator)
    dx = torch.randint(0, cell[1], (count,), generator=generator)
    return MaskDraw(grids, torch.stack([dy, dx], dim=1), cell, (int(size[0]), int(size[1])))
