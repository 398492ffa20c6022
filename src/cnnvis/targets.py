"""What score to explain: the logits from any model output, and one target class per image."""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .errors import Hint, ModelError, TargetError


@dataclass(frozen=True)
class UnitTarget:
    """A unit inside the network as the score to explain (Zeiler & Fergus projected single
    feature maps back to pixels): channel `channel` of `layer`, reduced over space by "sum",
    "max", or taken at one position `(y, x)`. Written `layer4:17`, `features.28:5@max`,
    `layer4:17@3,4`."""

    layer: str
    channel: int
    reduce: str = "sum"  # "sum" | "max" | "point"
    position: tuple[int, int] | None = None

    def __str__(self) -> str:
        where = f"{self.position[0]},{self.position[1]}" if self.position else self.reduce
        return f"{self.layer}:{self.channel}@{where}"

    def scores(self, activation: torch.Tensor) -> torch.Tensor:
        """Per-image scores (N,) from the layer's activation (N, C, ...) or (N, C)."""
        channels = activation.shape[1] if activation.dim() >= 2 else 0
        if not 0 <= self.channel < channels:
            raise TargetError(
                f"unit target {self}: layer {self.layer} has {channels} channels "
                f"(output shape {tuple(activation.shape)})"
            )
        unit = activation[:, self.channel]
        if unit.dim() == 1:
            return unit
        if self.position is not None:
            y, x = self.position
            if unit.dim() != 3 or not (0 <= y < unit.shape[1] and 0 <= x < unit.shape[2]):
                raise TargetError(
                    f"unit target {self}: position out of range for {tuple(unit.shape[1:])}"
                )
            return unit[:, y, x]
        flat = unit.flatten(1)
        return flat.amax(dim=1) if self.reduce == "max" else flat.sum(dim=1)


_UNIT = re.compile(r"^(?P<layer>[^:@]+):(?P<channel>\d+)(?:@(?P<how>sum|max|\d+,\d+))?$")


def parse_target(spec: str | int | None) -> int | str | UnitTarget | None:
    """A target written on the command line: top1 -> None, "285" -> 285, "tabby" -> "tabby",
    "layer4:17[@sum|@max|@Y,X]" -> UnitTarget."""
    if spec is None or isinstance(spec, int):
        return spec
    text = spec.strip()
    if text.lower() in ("top1", "top-1", ""):
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    match = _UNIT.match(text)
    if match:
        how = match["how"] or "sum"
        if "," in how:
            y, x = (int(v) for v in how.split(","))
            return UnitTarget(match["layer"], int(match["channel"]), "point", (y, x))
        return UnitTarget(match["layer"], int(match["channel"]), how)
    return text


TargetSpec = None | str | int | Sequence[int | str] | torch.Tensor | UnitTarget


def select_logits(output: Any, key: str | int | None = None) -> torch.Tensor:
    """The (N, classes) logits from a model's output: a tensor, a tuple/list (its first item), a
    dict or an object with `.logits` (Hugging Face style). `key` picks a dict entry or an
    attribute by name, or a tuple/list item by index (0, "1", ...)."""
    if key is not None:
        output = _select(output, key)
    if isinstance(output, torch.Tensor):
        logits = output
    elif isinstance(output, Mapping):
        named = output.get("logits")
        if named is None:
            tensors = [v for v in output.values() if isinstance(v, torch.Tensor)]
            if len(tensors) != 1:
                raise ModelError(
                    "the model returned a dict without 'logits'",
                    hint=Hint("output", str(_keys(output))),
                )
            named = tensors[0]
        logits = named
    elif hasattr(output, "logits") and isinstance(output.logits, torch.Tensor):
        logits = output.logits
    elif isinstance(output, Sequence) and output and isinstance(output[0], torch.Tensor):
        logits = output[0]
    else:
        raise ModelError(
            f"cannot find logits in a model output of type {type(output).__name__}; "
            "the model should return a tensor (N, classes), a tuple whose first item is one, "
            "or a dict with 'logits'"
        )
    if logits.dim() != 2:
        raise ModelError(
            f"expected logits of shape (N, classes), got {tuple(logits.shape)}; cnnvis explains "
            "image classifiers",
            hint=None if key is not None else Hint("output"),
        )
    if not logits.is_floating_point():
        raise ModelError(f"the logits must be floating point, got {logits.dtype}")
    return logits


def _select(output: Any, key: str | int) -> Any:
    """The entry `key` of a model's output: a dict key, an attribute, or a sequence index."""
    if isinstance(output, torch.Tensor):
        raise ModelError(
            f"output={key!r} was given, but the model returns a single tensor "
            f"{tuple(output.shape)}; leave output unset"
        )
    if isinstance(output, Mapping) and key in output:
        return output[key]
    if isinstance(key, str) and not key.startswith("_") and hasattr(output, key):
        return getattr(output, key)
    index = _index(key)
    if isinstance(output, Sequence) and index is not None and -len(output) <= index < len(output):
        return output[index]
    raise ModelError(
        f"the model's output has no entry {key!r}", hint=Hint("output", str(_keys(output)))
    )


def _index(key: str | int) -> int | None:
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    if isinstance(key, str) and key.strip().lstrip("-").isdigit():
        return int(key)
    return None


def _keys(output: Any) -> str:
    """The choices in a model's output, with the shapes of tensors: "logits (2, 10), aux"."""

    def describe(name: Any, value: Any) -> str:
        shape = f" {tuple(value.shape)}" if isinstance(value, torch.Tensor) else ""
        return f"{name}{shape}"

    if isinstance(output, Mapping):
        return ", ".join(describe(k, v) for k, v in output.items())
    if isinstance(output, Sequence) and not isinstance(output, str):
        return ", ".join(describe(i, v) for i, v in enumerate(output))
    return ", ".join([k for k in dir(output) if not k.startswith("_")][:20])


def resolve_targets(
    target: TargetSpec,
    logits: torch.Tensor,
    categories: Sequence[str] | None = None,
) -> torch.Tensor:
    """One class index per image, as a LongTensor (N,).

    None or "top1" -> each image's top-1 class; an int or a class name -> the same class for
    every image; a sequence or tensor -> one per image, whose length must equal N.
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
        indices = [_one(t, classes, categories) for t in value]
        return torch.tensor(indices, dtype=torch.long, device=logits.device)
    raise TargetError(
        f"cannot use {type(value).__name__} as a target; use a class index, a class name, or "
        "a list of them (one per image)"
    )


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
    from .errors import unknown

    raise TargetError(unknown("class name", name, categories, "or give the class index"))


def target_scores(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-image scores (N,): the logit of each image's target class.

    The backward pass uses their sum (never the mean), so in eval mode each image's gradient
    depends on that image alone.
    """
    return logits.gather(1, targets[:, None]).squeeze(1)
