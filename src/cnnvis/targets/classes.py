"""Classifier targets: a class (logit, softmax or log-softmax), several labels, a regression.

`resolve_targets` reads the ways a user names classes (an index, a name, None for top-1, one
per image) into one class index per image.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import TargetError, unknown
from .base import Activations, Context, PerImage, describe
from .output import select_logits

CLASS_SCORES = ("logit", "softmax", "log_softmax")
LABEL_SCORES = ("sigmoid", "logit")


def resolve_targets(
    target: Any,
    logits: torch.Tensor,
    categories: Sequence[str] | None = None,
) -> torch.Tensor:
    """One class index per image, as a LongTensor (N,).

    None or "top1" -> each image's top-1 class; an int or a class name -> the same class for
    every image; a sequence or tensor -> one per image, whose length must equal N (None or
    "top1" in it: that image's top-1).
    """
    n, classes = logits.shape
    if target is None or (isinstance(target, str) and target.lower() in ("top1", "top-1")):
        return logits.detach().argmax(dim=1)
    value: object = target  # NumPy arrays and scalars are taken too
    if isinstance(value, torch.Tensor | np.ndarray):
        value = value.flatten().tolist() if value.ndim else value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, int | float | str):  # a float is refused by `_one`, by value
        index = _one(value, classes, categories)
        return torch.full((n,), index, dtype=torch.long, device=logits.device)
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        if len(value) != n:
            raise TargetError(
                f"{len(value)} targets given for a batch of {n} images; give one target per "
                "image, or a single target for all"
            )
        top1 = logits.detach().argmax(dim=1).tolist()
        indices = [
            top1[i] if _is_top1(t) else _one(t, classes, categories) for i, t in enumerate(value)
        ]
        return torch.tensor(indices, dtype=torch.long, device=logits.device)
    raise TargetError(
        f"cannot use {type(value).__name__} as a target; use a class index, a class name, or "
        "a list of them (one per image)"
    )


def _is_top1(target: Any) -> bool:
    return target is None or (isinstance(target, str) and target.lower() in ("top1", "top-1"))


def _one(target: Any, classes: int, categories: Sequence[str] | None) -> int:
    if isinstance(target, bool | np.bool_):
        raise TargetError("a target must be a class index or name, not a bool")
    if isinstance(target, str):
        if not target.strip().lstrip("-").isdigit():
            return _by_name(target, categories)
        target = int(target)
    try:
        index = operator.index(target)  # int, NumPy or 0-d tensor integers; not 2.5
    except TypeError:
        raise TargetError(
            f"a target must be a class index (a whole number) or a class name, got "
            f"{type(target).__name__} {target!r}"
        ) from None
    if not 0 <= index < classes:
        raise TargetError(
            f"target {index} is out of range: the model has {classes} classes (0 to {classes - 1})"
        )
    return index


def _by_name(name: str, categories: Sequence[str] | None) -> int:
    if not categories:
        raise TargetError(f"target {name!r} is a name, but this model has no class names")
    lowered = [c.lower() for c in categories]
    if name.lower() in lowered:
        return lowered.index(name.lower())

    raise TargetError(unknown("class name", name, categories, "or give the class index"))


def target_scores(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-image scores (N,): the logit of each image's target class.

    The backward pass uses their sum (never the mean), so in eval mode each image's gradient
    depends on that image alone.
    """
    return logits.gather(1, targets[:, None]).squeeze(1)


def _score_kind(score: str, choices: tuple[str, ...], what: str) -> str:
    if score not in choices:
        raise TargetError(f"{what} score must be one of {', '.join(choices)}; got {score!r}")
    return score


def _named(target: Any) -> str:
    if isinstance(target, torch.Tensor):
        return "per-image classes" if target.dim() else str(int(target))
    if isinstance(target, list | tuple | np.ndarray):
        return "per-image classes"
    return "top1" if target is None else str(target)


@dataclass(frozen=True, eq=False)
class ClassTarget:
    """A class of an image classifier (N, classes): its logit (the default), its softmax
    probability or its log-softmax (`score`).

    `index`: a class index, a class name ("tabby"), None for each image's top-1 class, or one
    per image (a list, array or LongTensor). Bound to a batch, it holds a LongTensor (N,).
    The logit is the default because it depends on the class alone: the softmax and
    log-softmax scores also fall when other classes rise (a gradient map then shows evidence
    against the other classes too). Written `285`, `tabby`, `top1`, `tabby@softmax`.
    """

    index: Any = None
    score: str = "logit"
    needs_logits = True

    def __post_init__(self) -> None:
        _score_kind(self.score, CLASS_SCORES, "a class target's")

    def __str__(self) -> str:
        name = _named(self.index)
        return name if self.score == "logit" else f"{name}@{self.score}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClassTarget) or other.score != self.score:
            return False
        mine, theirs = self.index, other.index
        if isinstance(mine, torch.Tensor) or isinstance(theirs, torch.Tensor):
            return bool(torch.equal(torch.as_tensor(mine).cpu(), torch.as_tensor(theirs).cpu()))
        return bool(mine == theirs)

    __hash__ = None  # type: ignore[assignment]

    def indices(self, logits: torch.Tensor) -> torch.Tensor:
        """One class index per row of `logits` (N,)."""
        index = self.index
        if isinstance(index, torch.Tensor) and index.dim() == 1 and len(index) == len(logits):
            return index.to(logits.device)
        return resolve_targets(index, logits)

    def bind(self, output: Any, activations: Activations, context: Context) -> ClassTarget:
        """The class of each image, names and top-1 resolved on the recorded logits."""
        logits = select_logits(output).detach()
        return ClassTarget(
            resolve_targets(self.index, logits, context.categories(logits.shape[1])), self.score
        )

    def take(self, rows: torch.Tensor) -> ClassTarget:
        """The classes of the images `rows` (a bound target; otherwise the same target)."""
        if isinstance(self.index, torch.Tensor) and self.index.dim() == 1:
            return ClassTarget(self.index[rows.to(self.index.device)], self.score)
        return self

    def scores(self, output: Any, activations: Activations) -> torch.Tensor:
        """Each row's class score: logit, softmax probability or log-softmax (N,)."""
        logits = select_logits(output)
        indices = self.indices(logits)[:, None]
        if self.score == "softmax":
            logits = logits.softmax(dim=1)
        elif self.score == "log_softmax":
            logits = logits.log_softmax(dim=1)
        return logits.gather(1, indices).squeeze(1)


@dataclass(frozen=True)
class MultiLabel:
    """Several labels of a multi-label classifier at once: the sum of their sigmoid
    probabilities (the default; each label is an independent yes/no) or of their logits.

    `labels`: class indices or names. Written `labels:3,7` or `labels:cat,dog@logit`.
    """

    labels: tuple[int | str, ...]
    score: str = "sigmoid"
    needs_logits = True

    def __post_init__(self) -> None:
        labels = self.labels
        if isinstance(labels, int | str):
            labels = (labels,)
        object.__setattr__(self, "labels", tuple(labels))
        if not self.labels:
            raise TargetError("a multi-label target needs at least one label, e.g. labels:3,7")
        _score_kind(self.score, LABEL_SCORES, "a multi-label target's")

    def __str__(self) -> str:
        text = "labels:" + ",".join(str(label) for label in self.labels)
        return text if self.score == "sigmoid" else f"{text}@{self.score}"

    def bind(self, output: Any, activations: Activations, context: Context) -> MultiLabel:
        """The labels as class indices, names resolved and ranges checked."""
        logits = select_logits(output)
        classes = logits.shape[1]
        names = context.categories(classes)
        return MultiLabel(tuple(_one(label, classes, names) for label in self.labels), self.score)

    def scores(self, output: Any, activations: Activations) -> torch.Tensor:
        """Σ over the labels of sigmoid(logit) (or the logit) (N,)."""
        logits = select_logits(output)
        indices = [_one(label, logits.shape[1], None) for label in self.labels]
        chosen = logits[:, indices]
        return (chosen.sigmoid() if self.score == "sigmoid" else chosen).sum(dim=1)


@dataclass(frozen=True)
class Regression:
    """Output `index` of a regression model (N,) or (N, outputs), as it is. Written
    `regression:0`."""

    index: int = 0
    needs_logits = False

    def __str__(self) -> str:
        return f"regression:{self.index}"

    def scores(self, output: Any, activations: Activations) -> torch.Tensor:
        """The model's output `index` for each image (N,)."""
        values = output if isinstance(output, torch.Tensor) else select_logits(output)
        if values.dim() == 1:
            values = values[:, None]
        if values.dim() != 2:
            raise TargetError(
                f"a regression target needs an output of shape (N,) or (N, outputs); the model "
                f"returned {tuple(values.shape)}"
            )
        if not 0 <= self.index < values.shape[1]:
            raise TargetError(
                f"regression:{self.index} is out of range: the model has {values.shape[1]} "
                f"output(s) (0 to {values.shape[1] - 1})"
            )
        return values[:, self.index]


def row_classes(target: Any, rows: int) -> list[int | None]:
    """The class each row of a bound target explains (None where the row's target is not a
    class): a ClassTarget's indices, the class parts of a per-image list."""
    if isinstance(target, ClassTarget) and isinstance(target.index, torch.Tensor):
        return [int(i) for i in target.index.tolist()]
    if isinstance(target, PerImage):
        found: list[int | None] = [None] * rows
        for g, part in enumerate(target.parts):
            classes = row_classes(part, rows)
            for i in (target.owner == g).nonzero().flatten().tolist():
                found[i] = classes[i]
        return found
    return [None] * rows


def row_names(target: Any, rows: int) -> list[str]:
    """Each row's target as users write it."""
    names = getattr(target, "row_names", None)
    return list(names()) if callable(names) else [describe(target)] * rows
