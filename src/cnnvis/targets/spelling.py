"""One spelling of targets for the library, the command line, the web page and batch runs.

`parse_target` reads what a user types; `as_target` turns anything accepted as a target (a
string, an index, None, a per-image list that may mix kinds, a target object, a callable) into
a target object. A new kind of target adds its `prefix:` with `register_spelling`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import TargetError
from .base import CallableTarget, PerImage, Target
from .classes import CLASS_SCORES, LABEL_SCORES, ClassTarget, MultiLabel, Regression
from .segmentation import MaskTarget
from .similarity import Similarity
from .unit import UnitTarget

TargetSpec = None | str | int | Sequence[Any] | torch.Tensor | Target | Callable[[Any], Any]

FORMS = (
    "a class index (285), a class name (tabby), top1, a class score (285@softmax, "
    "tabby@log_softmax, class:285), a unit (layer4:17, layer4:17@max, layer4:17@3,4), a mask of a "
    "segmentation class (mask:15, mask:person), a detected box (box:0, box:x0,y0,x1,y1@label), several labels (labels:3,7), a similarity to "
    "an image (similar:other.jpg) or a regression output (regression:0)"
)

_SPELLINGS: dict[str, Callable[[str], Any]] = {}
_UNIT = re.compile(r"^(?P<layer>[^:@]+):(?P<channel>\d+)(?:@(?P<how>sum|max|\d+,\d+))?$")
_SCORED = re.compile(rf"^(?P<name>[^:@]+)@(?P<score>{'|'.join(CLASS_SCORES)})$")
_PREFIX = re.compile(r"^(?P<prefix>[A-Za-z_]+):(?P<rest>.*)$")


def register_spelling(prefix: str, read: Callable[[str], Any]) -> None:
    """Teach the parser `prefix:REST`: `read(REST)` returns the target (or raises a
    TargetError). A prefix wins over a unit target of a layer with that name (which can still
    be written `prefix:17@sum`)."""
    _SPELLINGS[prefix.lower()] = read


def spelling_error(text: str, why: str = "") -> TargetError:
    """A TargetError for an unreadable target, naming the accepted forms."""
    because = f" ({why})" if why else ""
    return TargetError(f"cannot read the target {text!r}{because}; write {FORMS}")


def parse_target(spec: str | int | None) -> Any:
    """A target as written on the command line, the web page or in the library.

    top1 -> None, "285" -> 285, "tabby" -> "tabby" (a class name, resolved against the model's
    names later), "layer4:17[@sum|@max|@Y,X]" -> UnitTarget, "tabby@softmax" -> ClassTarget,
    and the registered `prefix:` forms: "class:285" -> 285, "mask:15" -> MaskTarget, "labels:3,7" -> MultiLabel,
    "similar:other.jpg" -> Similarity, "regression:0" -> Regression. Anything else with a `:` or
    `@` is a TargetError naming the accepted forms.
    """
    if spec is None or isinstance(spec, int):
        return spec
    text = spec.strip()
    if text.lower() in ("top1", "top-1", ""):
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    prefixed = _PREFIX.match(text)
    if prefixed and prefixed["prefix"].lower() in _SPELLINGS:
        return _SPELLINGS[prefixed["prefix"].lower()](prefixed["rest"].strip())
    match = _UNIT.match(text)
    if match:
        how = match["how"] or "sum"
        if "," in how:
            y, x = (int(v) for v in how.split(","))
            return UnitTarget(match["layer"], int(match["channel"]), "point", (y, x))
        return UnitTarget(match["layer"], int(match["channel"]), how)
    scored = _SCORED.match(text)
    if scored:
        return ClassTarget(parse_target(scored["name"]), scored["score"])
    if ":" in text or "@" in text:
        raise spelling_error(text)
    return text


def as_target(spec: Any) -> Any:
    """Any accepted target as a target object (not yet bound to a batch).

    A target object (anything with `scores`) is kept; None, an index, a class name, an array or
    tensor of indices -> ClassTarget; a string is read by `parse_target`; a callable ->
    CallableTarget; a list or tuple gives one target per image (all classes: one ClassTarget;
    mixed kinds, None and "top1" included: a PerImage target).
    """
    if hasattr(spec, "scores") and not isinstance(spec, type):
        return spec
    if isinstance(spec, str):
        parsed = parse_target(spec)
        return parsed if _is_target(parsed) else ClassTarget(parsed)
    if isinstance(spec, list | tuple):
        return _per_image(list(spec))
    if callable(spec) and not isinstance(spec, torch.Tensor | np.ndarray | type):
        return CallableTarget(spec)
    return ClassTarget(spec)  # None, ints, tensors, arrays; anything else fails when bound


def _is_target(value: Any) -> bool:
    return hasattr(value, "scores") and not isinstance(value, type)


def _per_image(items: list[Any]) -> Any:
    """One target per image: a ClassTarget when every item is a plain class, else PerImage."""
    plain = [parse_target(i) if isinstance(i, str) else i for i in items]
    if not any(_is_target(p) or callable(p) for p in plain):
        return ClassTarget(plain)
    parts: list[Any] = []
    owner = []
    for item in (as_target(p) for p in plain):
        position = next((g for g, part in enumerate(parts) if _same(part, item)), None)
        if position is None:
            parts.append(item)
            position = len(parts) - 1
        owner.append(position)
    return PerImage(tuple(parts), torch.tensor(owner, dtype=torch.long))


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return type(a) is type(b) and bool(a == b)
    except (RuntimeError, TypeError, ValueError):  # tensors inside: not comparable as a whole
        return False


def _labels(rest: str) -> MultiLabel:
    body, _, score = rest.partition("@")
    labels = [p.strip() for p in body.split(",") if p.strip()]
    if not labels:
        raise spelling_error(f"labels:{rest}", "no label given")
    if score and score not in LABEL_SCORES:
        raise spelling_error(f"labels:{rest}", f"the score is one of {', '.join(LABEL_SCORES)}")
    parsed: tuple[int | str, ...] = tuple(int(p) if p.isdigit() else p for p in labels)
    return MultiLabel(parsed, score or "sigmoid")


def _regression(rest: str) -> Regression:
    if not rest.isdigit():
        raise spelling_error(f"regression:{rest}", "the output index is a whole number")
    return Regression(int(rest))


def _class(rest: str) -> int | str:
    if not rest:
        raise spelling_error("class:", "give the class, e.g. class:285 or class:tabby")
    return int(rest) if rest.isdigit() else rest


def _mask(rest: str) -> MaskTarget:
    if not rest:
        raise spelling_error("mask:", "give the class, e.g. mask:15 or mask:person")
    return MaskTarget(int(rest) if rest.isdigit() else rest)


def _similar(rest: str) -> Similarity:
    if not rest:
        raise spelling_error("similar:", "give the reference image, e.g. similar:other.jpg")
    return Similarity(rest)


def _box(rest: str) -> Any:
    from ..detection.box_target import parse_box

    return parse_box(rest)


register_spelling("class", _class)
register_spelling("labels", _labels)
register_spelling("mask", _mask)
register_spelling("similar", _similar)
register_spelling("regression", _regression)
register_spelling("box", _box)
