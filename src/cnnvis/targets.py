"""What score to explain: the logits from any model output, and one target class per image."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .errors import ModelError, TargetError


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


def select_logits(output: Any, key: str | None = None) -> torch.Tensor:
    """The (N, classes) logits from a model's output: a tensor, a tuple/list, a dict or an object
    with `.logits` (Hugging Face style). `key` picks a dict entry or attribute by name."""
    if key is not None:
        if isinstance(output, Mapping) and key in output:
            output = output[key]
        elif hasattr(output, key):
            output = getattr(output, key)
        else:
            raise ModelError(f"the model's output has no entry {key!r}; available: {_keys(output)}")
    if isinstance(output, torch.Tensor):
        logits = output
    elif isinstance(output, Mapping):
        logits = output.get("logits")
        if logits is None:
            tensors = [v for v in output.values() if isinstance(v, torch.Tensor)]
            if len(tensors) != 1:
                raise ModelError(
                    "the model returned a dict without 'logits'; pass output=KEY to choose one "
                    f"of {_keys(output)}"
                )
            logits = tensors[0]
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
            f"expected logits of shape (N, classes), got {tuple(logits.shape)}; "
            "cnnvis explains image classifiers"
        )
    return logits


def _keys(output: Any) -> list[str]:
    if isinstance(output, Mapping):
        return [str(k) for k in output]
    return [k for k in dir(output) if not k.startswith("_")][:20]


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
    if isinstance(target, torch.Tensor):
        target = target.flatten().tolist() if target.dim() else int(target)
    if isinstance(target, int | str):
        index = _one(target, classes, categories)
        return torch.full((n,), index, dtype=torch.long, device=logits.device)
    if isinstance(target, Sequence):
        if len(target) != n:
            raise TargetError(
                f"{len(target)} targets given for a batch of {n} images; give one target per "
                "image, or a single target for all"
            )
        indices = [_one(t, classes, categories) for t in target]
        return torch.tensor(indices, dtype=torch.long, device=logits.device)
    raise TargetError(f"cannot use {type(target).__name__} as a target; use an int or class name")


def _one(target: int | str, classes: int, categories: Sequence[str] | None) -> int:
    if isinstance(target, bool):
        raise TargetError("a target must be a class index or name, not a bool")
    if isinstance(target, str):
        if target.strip().lstrip("-").isdigit():
            target = int(target)
        else:
            return _by_name(target, categories)
    if not 0 <= int(target) < classes:
        raise TargetError(f"target {target} is out of range: the model has {classes} classes")
    return int(target)


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
