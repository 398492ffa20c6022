"""`BoxTarget`: one detection as the score to explain, for any detector.

The score of image n is, for each reference box r (with its label),

    IoU(r, d) + score(d)   for d the detection of r's label with the highest IoU with r,
                           if that IoU is above `iou_threshold`; else 0,

summed over the references: pytorch-grad-cam's `FasterRCNNBoxScoreTarget` recipe (which takes
the best-IoU detection of any label and scores it only if its label matches; the two agree
whenever that score is not 0). The reference is a detected box by index (`BoxTarget(0)`,
written `box:0`) or a box and label the user gives (`BoxTarget(box=(x0, y0, x1, y1),
label=17)`).

Why the score has a gradient through a detector: a torchvision detector in eval mode takes a
list of images (or an (N, 3, H, W) batch) and returns a list of dicts. Its `transform` resizes
(bilinear) and normalizes the image, the backbone / FPN and the heads are ordinary layers, each
detection's score is the softmax (R-CNN, SSD) or sigmoid (RetinaNet, FCOS) of the head's class
logit, and its box is the head's regression decoded onto a proposal or anchor (which itself is
a constant: the RPN's proposals are detached). The discrete steps (proposal selection, score
threshold, NMS, top-k) only choose which detections come out: they are piecewise constant, so
the gradient flows through the chosen detections' scores and boxes into the features and the
input. The reference box is a constant; the IoU term is differentiable in the detected box.

A reference given by index refers to the detections of the output being scored. A method that
scores other forwards (masked or noisy inputs: D-RISE, RISE, occlusion, evaluation) must first
`bind` the target to the output of the unperturbed image, which fixes the reference boxes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..errors import TargetError
from .outputs import Detections, box_iou, read_detections

BoxLike = Sequence[float] | Sequence[Sequence[float]] | Tensor


class BoxTarget:
    """A detection to explain: a detected box by index, or boxes and labels matched by IoU.

    `BoxTarget(3)`: the detector's box 3 (in each image). `BoxTarget(box=(x0, y0, x1, y1),
    label=17)`: the detection of label 17 that best overlaps the box; several boxes (R, 4) with
    R labels are summed. `iou_threshold`: the least IoU that counts as the same object.
    Implements the target protocol `scores(output, activations) -> (N,)`.
    """

    def __init__(
        self,
        index: int | None = None,
        *,
        box: BoxLike | None = None,
        label: int | Sequence[int] | None = None,
        iou_threshold: float = 0.5,
    ) -> None:
        if (index is None) == (box is None):
            raise TargetError("a box target is a detected box's index or a box with a label")
        if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
            raise TargetError(f"a box index is an integer (box:0 is the first), got {index!r}")
        if index is not None and index < 0:
            raise TargetError(f"box index {index} is negative; box:0 is the first box")
        if not 0.0 <= iou_threshold < 1.0:
            raise TargetError(f"iou_threshold must be in [0, 1), got {iou_threshold}")
        self.index = index
        self.iou_threshold = float(iou_threshold)
        self._references: list[tuple[Tensor, Tensor]] | None = None
        self._given: tuple[Tensor, Tensor] | None = None
        self._bound = False
        if box is not None:
            self._given = _user_boxes(box, label)
            self._references = [self._given]

    def __str__(self) -> str:
        if self.index is not None:
            return f"box:{self.index}"
        boxes, labels = self._given if self._given is not None else _NO_REFERENCE
        first = ",".join(f"{float(v):g}" for v in boxes[0]) if len(boxes) else ""
        return f"box:{first}@{int(labels[0])}" if len(labels) else f"box:{first}"

    def __repr__(self) -> str:
        return f"BoxTarget({self})"

    # ------------------------------------------------------------------ references

    @property
    def given(self) -> tuple[Tensor, Tensor] | None:
        """The user's boxes (R, 4) and labels (R,), or None for a target by index."""
        return None if self.index is not None else self._given

    def references(self, detections: Sequence[Detections]) -> list[tuple[Tensor, Tensor]]:
        """Per image, the reference boxes (R, 4) and labels (R,), constants: a bound target's,
        a user's, or (by index) the given detections' own box `index`."""
        if self._references is not None:
            if len(self._references) == 1:
                return self._references * len(detections)
            if len(self._references) != len(detections):
                raise TargetError(
                    f"this box target was bound to {len(self._references)} images but the "
                    f"output has {len(detections)}"
                )
            return self._references
        index = self.index if self.index is not None else 0  # (a user box sets _references)
        refs = []
        for n, found in enumerate(detections):
            self._check_index(found, index, n)
            picked = slice(index, index + 1)
            refs.append((found.boxes[picked].detach(), found.labels[picked].detach()))
        return refs

    def chosen(self, found: Detections) -> int | None:
        """The index of the detection this target explains among one image's detections: its
        index, or a user box's best same-label match above the IoU threshold (None: none)."""
        if self.index is not None:
            return self.index if self.index < len(found) else None
        if self._given is None or len(found) == 0:
            return None
        boxes, labels = self._given
        ious = box_iou(boxes[:1].to(found.boxes), found.boxes)[0]
        ious = torch.where(found.labels == int(labels[0]), ious, torch.full_like(ious, -1.0))
        best = int(ious.argmax())
        return best if float(ious[best]) > self.iou_threshold else None

    @staticmethod
    def _check_index(found: Detections, index: int, image: int) -> None:
        if len(found) == 0:
            raise TargetError(
                f"the detector found nothing in image {image}: no box scored above its "
                "threshold, so there is no box to explain"
            )
        if index >= len(found):
            raise TargetError(
                f"box index {index} is out of range: the detector found {len(found)} "
                f"box{'es' if len(found) != 1 else ''} in image {image} "
                f"(box:0 to box:{len(found) - 1})"
            )

    def bind(self, output: Any, activations: Any = None, context: Any = None) -> BoxTarget:
        """This target with its reference boxes fixed from the output of the unperturbed
        image(s), for methods that score other forwards (one reference per image; `take`
        picks them for the extra rows of multi-pass methods). A target bound to one image
        scores every image of a later batch against that image's references (a batch of its
        perturbed copies). A user box must match a detection there (else TargetError: its map
        would be zero). `context.owned` (a per-image list of targets): only those rows are
        bound; the others get no reference (score 0). `activations` are not used. A bound
        target binds to itself."""
        if self._bound:
            return self
        detections = [d.detach() for d in read_detections(output)]
        owned = _owned_rows(context, len(detections))
        references = self.references([detections[n] for n in owned])
        bound_refs = [_NO_REFERENCE] * len(detections)
        for n, refs in zip(owned, references, strict=True):
            found, (boxes, labels) = detections[n], refs
            if len(found) == 0:
                raise TargetError(
                    f"the detector found nothing in image {n}, so no box matches the box target"
                )
            if float(self._image_score(found, boxes, labels).detach()) == 0.0:
                raise TargetError(_no_match(found, boxes, labels, self.iou_threshold, n))
            bound_refs[n] = refs
        bound = copy.copy(self)
        bound._references = bound_refs
        bound._bound = True
        return bound

    def take(self, rows: Tensor) -> BoxTarget:
        """The target of the images `rows` (repeats allowed): row i of the result is scored
        against the references of image `rows[i]` (a bound target's). A target not bound to
        several images is the same for every row and is returned as it is."""
        if self._references is None or len(self._references) == 1:
            return self
        picked = copy.copy(self)
        picked._references = [self._references[int(r)] for r in rows.tolist()]
        return picked

    # ------------------------------------------------------------------ scores

    def scores(self, output: Any, activations: Mapping[str, Tensor] | None = None) -> Tensor:
        """The score of each image (N,), differentiable through the detections (see the
        module's docstring). `activations` are not used."""
        detections = read_detections(output)
        references = self.references(detections)
        return torch.stack(
            [
                self._image_score(found, boxes, labels)
                for found, (boxes, labels) in zip(detections, references, strict=True)
            ]
        )

    def _image_score(self, found: Detections, boxes: Tensor, labels: Tensor) -> Tensor:
        """Sum over the references of IoU + score of the best-overlapping detection of the same
        label above the IoU threshold (0 for a reference without one)."""
        total = found.scores.sum() * 0.0  # 0, still attached to the forward's graph
        if len(found) == 0:
            return total
        ious = box_iou(boxes.to(found.boxes), found.boxes)  # (R, K)
        same = labels.to(found.labels.device)[:, None] == found.labels[None, :]
        ious = torch.where(same, ious, torch.full_like(ious, -1.0))
        chosen = ious.detach()
        for r in range(ious.shape[0]):
            best = int(chosen[r].argmax())
            if float(chosen[r, best]) > self.iou_threshold:
                total = total + ious[r, best] + found.scores[best]
        return total


_NO_REFERENCE = (torch.empty(0, 4), torch.empty(0, dtype=torch.long))


def _owned_rows(context: Any, images: int) -> list[int]:
    """The images a bound target scores: `context.owned` where given, else all."""
    owned = getattr(context, "owned", None)
    return list(range(images)) if owned is None else [int(r) for r in owned.tolist()]


def parse_box(rest: str) -> BoxTarget:
    """The target written `box:N` (the detector's box N) or `box:x0,y0,x1,y1@label` (the
    detection of that label best overlapping a box in pixels of the model's input)."""
    text = rest.strip()
    if text.isdigit():
        return BoxTarget(int(text))
    corners, at, label = text.partition("@")
    try:
        box = [float(v) for v in corners.split(",")]
    except ValueError:
        box = []
    if len(box) != 4 or not at or not label.strip().isdigit():
        raise TargetError(
            f"cannot read the box target 'box:{rest}'; write box:N for the detector's box N "
            "(box:0 is the first) or box:x0,y0,x1,y1@LABEL for a box in pixels and a label index"
        )
    return BoxTarget(box=box, label=int(label))


def _user_boxes(box: BoxLike, label: int | Sequence[int] | None) -> tuple[Tensor, Tensor]:
    """A user's box(es) as (R, 4) float and label(s) as (R,) int64."""
    boxes = torch.as_tensor(box, dtype=torch.float32).detach()
    if boxes.dim() == 1:
        boxes = boxes[None]
    if boxes.dim() != 2 or boxes.shape[1] != 4 or boxes.shape[0] == 0:
        raise TargetError(
            f"a box is (x0, y0, x1, y1) in pixels of the model's input, got shape "
            f"{tuple(boxes.shape)}"
        )
    if bool(((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any()):
        raise TargetError(f"a box needs x0 < x1 and y0 < y1, got {boxes.tolist()}")
    if label is None:
        raise TargetError("a box target needs the label of the object in the box")
    labels = torch.as_tensor(label, dtype=torch.long).reshape(-1)
    if labels.numel() == 1:
        labels = labels.expand(boxes.shape[0]).clone()
    if labels.numel() != boxes.shape[0]:
        raise TargetError(
            f"{boxes.shape[0]} boxes need one label or {boxes.shape[0]}, got {labels.numel()}"
        )
    return boxes, labels


def _no_match(found: Detections, boxes: Tensor, labels: Tensor, threshold: float, n: int) -> str:
    """Why a user box matches no detection of its label."""
    ious = box_iou(boxes.to(found.boxes), found.boxes)
    best = int(ious[0].argmax())
    return (
        f"no detection of label {int(labels[0])} overlaps the box by IoU > {threshold:g} in "
        f"image {n} (the closest box, box:{best}, has label {int(found.labels[best])} and IoU "
        f"{float(ious[0, best]):.2f}); the detections: {found.describe()}"
    )
