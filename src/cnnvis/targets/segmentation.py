"""Segmentation targets: a class's scores summed over a region of the output map (N, C, H, W).

As pytorch-grad-cam's `SemanticSegmentationTarget`: score = Σ_ij out[c, i, j] · mask[i, j],
with the mask the class's predicted region (where c is the arg-max class), a mask the user
gives, or a box.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import TargetError
from .base import Activations, Context
from .classes import _one

Box = tuple[int, int, int, int]


def segment_scores(output: Any) -> torch.Tensor:
    """The (N, classes, H, W) score map of a segmentation model's output: a tensor, a dict
    with "out" (torchvision) or one tensor, a tuple's first tensor, or `.logits`."""
    found: Any = output
    if isinstance(found, Mapping):
        tensors = [v for v in found.values() if isinstance(v, torch.Tensor)]
        found = found.get("out", found.get("logits", tensors[0] if len(tensors) == 1 else None))
    elif isinstance(found, Sequence) and found and isinstance(found[0], torch.Tensor):
        found = found[0]
    elif not isinstance(found, torch.Tensor) and isinstance(
        getattr(found, "logits", None), torch.Tensor
    ):
        found = found.logits
    if not isinstance(found, torch.Tensor) or found.dim() != 4:
        shape = tuple(found.shape) if isinstance(found, torch.Tensor) else type(found).__name__
        raise TargetError(
            f"a mask target needs a segmentation output (N, classes, H, W), or a dict with "
            f"'out' holding one; the model returned {shape} (pick an entry with output=)"
        )
    return found


def box_region(box: Box, size: tuple[int, int]) -> torch.Tensor:
    """A (1, H, W) mask that is 1 inside `box` = (x0, y0, x1, y1), end exclusive, in output
    pixels."""
    x0, y0, x1, y1 = (int(v) for v in box)
    h, w = size
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise TargetError(
            f"box {box} is not inside the {w}x{h} output map; give (x0, y0, x1, y1) with "
            f"0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h}"
        )
    region = torch.zeros(1, h, w)
    region[:, y0:y1, x0:x1] = 1
    return region


def _user_region(mask: torch.Tensor, size: tuple[int, int], rows: int) -> torch.Tensor:
    """A user's mask (H, W) or (N, H, W) as float (1 or N, H, W) at the output's size (nearest
    neighbours when it was given at another size, e.g. the input's)."""
    region = torch.as_tensor(mask).detach()
    region = region[None] if region.dim() == 2 else region
    if region.dim() != 3 or region.shape[0] not in (1, rows):
        raise TargetError(
            f"a mask target's mask must be (H, W) or ({rows}, H, W), got {tuple(mask.shape)}"
        )
    region = region.float()
    if tuple(region.shape[1:]) != size:
        region = F.interpolate(region[:, None], size=size, mode="nearest")[:, 0]
    return region


@dataclass(frozen=True, eq=False)
class MaskTarget:
    """A segmentation class's scores summed over a region: the class's predicted region (the
    pixels whose arg-max class it is; the default), a user `mask` ((H, W) or (N, H, W), bool
    or weights), or a `box` (x0, y0, x1, y1) in output pixels. `category`: class index or
    name. Written `mask:15`, `mask:person`. Bound to a batch, it holds the region (N, H, W)."""

    category: int | str
    mask: torch.Tensor | None = None
    box: Box | None = None
    needs_logits = False

    def __str__(self) -> str:
        return f"mask:{self.category}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MaskTarget):
            return False
        same_mask = (self.mask is None and other.mask is None) or (
            self.mask is not None
            and other.mask is not None
            and torch.equal(self.mask.cpu(), other.mask.cpu())
        )
        return self.category == other.category and self.box == other.box and same_mask

    __hash__ = None  # type: ignore[assignment]

    def region(self, scores: torch.Tensor, owned: Sequence[int] | None = None) -> torch.Tensor:
        """The weights (1 or N, H, W) of each pixel of the output map for this target."""
        if not isinstance(self.category, int):
            raise TargetError(f"mask target {self}: bind it to a batch first to read its name")
        rows, _, h, w = scores.shape
        if self.mask is not None:
            return _user_region(self.mask, (h, w), rows).to(scores.device, scores.dtype)
        if self.box is not None:
            return box_region(self.box, (h, w)).to(scores.device, scores.dtype)
        region = (scores.detach().argmax(dim=1) == self.category).to(scores.dtype)
        empty = [i for i in (range(rows) if owned is None else owned) if not region[i].any()]
        if empty:
            raise TargetError(
                f"class {self.category} is absent from the model's prediction for image(s) "
                f"{empty[:10]}, so its predicted region is empty; choose a class the model "
                "predicts there, or give a mask or a box"
            )
        return region

    def bind(self, output: Any, activations: Activations, context: Context) -> MaskTarget:
        """The class as an index and its region fixed on the recorded output."""
        scores = segment_scores(output).detach()
        classes = scores.shape[1]
        category = _one(self.category, classes, context.categories(classes))
        named = MaskTarget(category, self.mask, self.box)
        return MaskTarget(category, named.region(scores, context.owned_rows()), self.box)

    def take(self, rows: torch.Tensor) -> MaskTarget:
        """The regions of the images `rows` (the same target when one region serves all)."""
        if self.mask is None or self.mask.dim() != 3 or self.mask.shape[0] == 1:
            return self
        return MaskTarget(self.category, self.mask[rows.to(self.mask.device)], self.box)

    def scores(self, output: Any, activations: Activations) -> torch.Tensor:
        """Σ_ij out[n, c, i, j] · region[n, i, j] for each image (N,)."""
        scores = segment_scores(output)
        category = self.category
        if not isinstance(category, int):
            raise TargetError(f"mask target {self}: bind it to a batch first to read its name")
        if not 0 <= category < scores.shape[1]:
            raise TargetError(
                f"mask target {self}: the model has {scores.shape[1]} classes "
                f"(0 to {scores.shape[1] - 1})"
            )
        return (scores[:, category] * self.region(scores)).sum(dim=(1, 2))
