"""A detector's output read into one `Detections` value per image.

Detectors return their findings in several shapes; `read_detections` accepts:

- torchvision's: a list with one dict per image, `{"boxes": (K, 4), "scores": (K,),
  "labels": (K,)}` (Mask / Keypoint R-CNN add entries, which are ignored);
- one dict for the whole batch, with (N, K, 4) boxes, (N, K) scores and labels (or (K, 4) ...
  for a single image);
- a list with one `(boxes, scores, labels)` tuple per image.

Boxes are (x0, y0, x1, y1) in pixels of the image the detector was given. A dict may also give
class probabilities (K, C) under "probabilities" (or "probs", "class_probs"), as D-RISE's
similarity uses them (labels and scores are then read from them when missing), and an
objectness (K,) under "objectness" (YOLO-style detectors).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import ModelError

_PROBABILITY_KEYS = ("probabilities", "probs", "class_probs", "class_probabilities")
SHAPES = (
    "a detector's output is a list of dicts with 'boxes' (K, 4), 'scores' (K,) and 'labels' "
    "(K,) (torchvision's), one such dict for the batch, or a list of (boxes, scores, labels)"
)


@dataclass(frozen=True)
class Detections:
    """One image's detections: `boxes` (K, 4) as (x0, y0, x1, y1) pixels, `scores` (K,),
    `labels` (K,) int64, and `probabilities` (K, C) and `objectness` (K,) when the detector
    gives them.

    The tensors are the detector's own: still attached to autograd when the forward recorded
    it, so a score built from them can be differentiated."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    probabilities: Tensor | None = None
    objectness: Tensor | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def detach(self) -> Detections:
        """The same detections, cut from autograd."""
        probabilities = None if self.probabilities is None else self.probabilities.detach()
        objectness = None if self.objectness is None else self.objectness.detach()
        return Detections(
            self.boxes.detach(),
            self.scores.detach(),
            self.labels.detach(),
            probabilities,
            objectness,
        )

    def describe(self, categories: Sequence[str] | None = None, limit: int = 5) -> str:
        """A short text of the first `limit` boxes: 'box:0 cat 0.91 (12, 30, 80, 95), ...'."""
        plain = self.detach()
        parts = []
        for i in range(min(len(self), limit)):
            label = int(plain.labels[i])
            name = categories[label] if categories and 0 <= label < len(categories) else label
            x0, y0, x1, y1 = (round(float(v)) for v in plain.boxes[i])
            parts.append(f"box:{i} {name} {float(plain.scores[i]):.2f} ({x0}, {y0}, {x1}, {y1})")
        more = f", ... ({len(self)} in all)" if len(self) > limit else ""
        return ", ".join(parts) + more


def read_detections(output: Any) -> list[Detections]:
    """One `Detections` per image from a detector's output (see the module's docstring)."""
    if isinstance(output, Detections):
        return [output]
    if isinstance(output, Mapping):
        return _from_batch_dict(output)
    if isinstance(output, Sequence) and not isinstance(output, str | bytes):
        items = list(output)
        if all(isinstance(item, Detections) for item in items):
            return items
        return [_one(item, i) for i, item in enumerate(items)]
    raise ModelError(f"the model returned a {type(output).__name__}; {SHAPES}")


def _from_batch_dict(output: Mapping[str, Any]) -> list[Detections]:
    boxes = _tensor(output, ("boxes",), 0)
    if boxes is not None and boxes.dim() == 3:
        count = boxes.shape[0]
        return [
            _one({k: v[i] for k, v in output.items() if isinstance(v, Tensor)}, i)
            for i in range(count)
        ]
    return [_one(output, 0)]


def _one(item: Any, image: int) -> Detections:
    """One image's detections from a dict or a (boxes, scores, labels) tuple."""
    if isinstance(item, Sequence) and len(item) == 3 and all(isinstance(t, Tensor) for t in item):
        item = {"boxes": item[0], "scores": item[1], "labels": item[2]}
    if not isinstance(item, Mapping):
        raise ModelError(f"image {image} of the output is a {type(item).__name__}; {SHAPES}")
    boxes = _tensor(item, ("boxes",), image)
    if boxes is None:
        keys = ", ".join(repr(k) for k in item) or "none"
        raise ModelError(f"image {image} of the output has no 'boxes' (its keys: {keys}); {SHAPES}")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ModelError(
            f"image {image}: 'boxes' has shape {tuple(boxes.shape)}, not (K, 4) as "
            "(x0, y0, x1, y1) pixels"
        )
    probabilities = _tensor(item, _PROBABILITY_KEYS, image)
    scores = _tensor(item, ("scores",), image)
    labels = _tensor(item, ("labels",), image)
    if probabilities is not None:
        _check_length(probabilities, len(boxes), "probabilities", image)
        if probabilities.dim() != 2:
            raise ModelError(f"image {image}: class probabilities must be (K, C)")
        top = probabilities.max(dim=1)
        scores = top.values if scores is None else scores
        labels = top.indices if labels is None else labels
    if scores is None or labels is None:
        missing = "'scores'" if scores is None else "'labels'"
        raise ModelError(f"image {image} of the output has no {missing}; {SHAPES}")
    _check_length(scores, len(boxes), "scores", image)
    _check_length(labels, len(boxes), "labels", image)
    objectness = _tensor(item, ("objectness",), image)
    if objectness is not None:
        _check_length(objectness, len(boxes), "objectness", image)
        objectness = objectness.reshape(-1)
    return Detections(
        boxes, scores.reshape(-1), labels.reshape(-1).long(), probabilities, objectness
    )


def _tensor(item: Mapping[str, Any], keys: Sequence[str], image: int) -> Tensor | None:
    for key in keys:
        value = item.get(key)
        if value is None:
            continue
        if not isinstance(value, Tensor):
            raise ModelError(f"image {image}: {key!r} is a {type(value).__name__}, not a tensor")
        return value
    return None


def _check_length(values: Tensor, count: int, name: str, image: int) -> None:
    if values.dim() == 0 or values.shape[0] != count:
        raise ModelError(
            f"image {image}: {name!r} has shape {tuple(values.shape)} but there are {count} boxes"
        )


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over union of every box in `a` (A, 4) with every box in `b` (B, 4): (A, B).

    Differentiable in both; boxes of zero area have IoU 0 with everything."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    overlap = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    union = area_a[:, None] + area_b[None, :] - overlap
    return torch.where(union > 0, overlap / union.clamp(min=1e-12), torch.zeros_like(overlap))
