"""Layers by dotted `named_modules()` name."""

from __future__ import annotations

from torch import nn

from ..errors import Hint, LayerError, unknown
from ..model import unwrap


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called `name` (a dotted `named_modules()` name such as `layer4.1.conv2`).

    For `nn.DataParallel` the names are the wrapped module's (cnnvis runs that module, see
    `compute_model`); names with the wrapper's `module.` prefix are accepted too."""
    if not isinstance(name, str):
        raise LayerError(
            f"a layer name must be a string such as 'layer4', got {type(name).__name__} {name!r}",
            hint=Hint("layers"),
        )
    modules: dict[str, nn.Module] = dict(unwrap(model).named_modules())  # untyped in torch
    candidates = [name]
    while candidates[-1].startswith("module."):
        candidates.append(candidates[-1].removeprefix("module."))
    for candidate in candidates:
        if candidate in modules and candidate != "":
            return modules[candidate]
    raise LayerError(unknown("layer", name, [n for n in modules if n]), hint=Hint("layers"))
