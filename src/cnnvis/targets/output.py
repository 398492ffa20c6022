"""Reading a model's output: the (N, classes) logits, or the entry a user picked by name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..errors import Hint, ModelError


def select_output(output: Any, key: str | int | None = None) -> Any:
    """The entry `key` of a model's output (a dict key, attribute or index), or the output."""
    return output if key is None else _select(output, key)


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
