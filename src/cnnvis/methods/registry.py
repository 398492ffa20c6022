"""One registry of methods by name: the API, the CLI choices, the docs table and the tests read it."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import MethodError, unknown

Compute = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class MethodInfo:
    """What a method is, what it needs and what it costs.

    `compute(recording, layer)` returns the raw signed map: (N, 3, H, W) for pixel methods,
    (N, h, w) at the layer's resolution for CAMs (the API upsamples those to the input).
    """

    name: str
    kind: str  # "pixel" | "cam"
    summary: str
    formula: str
    paper: str
    passes: str
    compute: Compute
    input_rules: tuple[str, ...] = ()
    layer_gradients: bool = False
    needs: tuple[str, ...] = ()
    order: int = 100  # position in listings: 10s gradient family, 20s CAMs, ...
    per_channel: bool = False  # one forward per channel of the layer (Score-CAM, Ablation-CAM)

    @property
    def needs_layer(self) -> bool:
        return self.kind == "cam" or "layer" in self.needs


_REGISTRY: dict[str, MethodInfo] = {}


def register(info: MethodInfo) -> MethodInfo:
    """Add a method; its name must be new."""
    if info.name in _REGISTRY:
        raise ValueError(f"method {info.name!r} is already registered")
    _REGISTRY[info.name] = info
    return info


def get_method(name: str) -> MethodInfo:
    """The method registered as `name` (e.g. 'grad-cam'); a MethodError lists close names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise MethodError(unknown("method", name, _REGISTRY, "see cnnvis.list_methods()")) from None


def list_methods(pattern: str = "*") -> list[MethodInfo]:
    """Registered methods whose name matches the glob `pattern`, by `order`, then name."""
    found = [m for n, m in _REGISTRY.items() if fnmatch.fnmatch(n, pattern)]
    return sorted(found, key=lambda m: (m.order, m.name))
