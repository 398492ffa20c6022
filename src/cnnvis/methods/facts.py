"""What a method is, needs and costs, as typed records: `MethodInfo`, `Needs` and `Cost`.

Every listing (`cnnvis methods`, the web page's /api/methods, the README's method table) shows
`MethodInfo.to_row()`; code reads the typed fields (`needs_layer`, `wraps_method`,
`many_passes`, `per_channel`), never the display words.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch

from ..errors import MethodError

RawMap = torch.Tensor | tuple[torch.Tensor, dict[str, Any]]
"""What a method's `compute` returns: the raw map, or (the raw map, diagnostics) where a method
also reports numbers about it (integrated gradients' completeness error); the diagnostics join
the explanation's `params`."""

Compute = Callable[..., RawMap]
"""`compute(recording, layer, **params)`: a method's raw map (see `RawMap`)."""

Kind = Literal["pixel", "cam"]
"""pixel: a map per input pixel (N, 3, H, W); cam: a map at a layer, (N, h, w)."""

Per = Literal["step", "sample", "channel", "window", "mask"]
"""What the passes of a many-pass method are counted in: integrated gradients' path steps,
SmoothGrad's noisy samples, Score-CAM's and Ablation-CAM's channels, occlusion's window
positions, RISE's masks."""

KINDS: tuple[Kind, ...] = get_args(Kind)
PERS: tuple[Per, ...] = get_args(Per)


@dataclass(frozen=True)
class Cost:
    """What a method costs in passes through the model.

    `forwards` and `backwards` are the passes made once per image batch; `per`, when set, names
    what the further passes are counted in (they grow with the method's steps, samples,
    channels, windows or masks, so the method is slow on a CPU). `text` is the cost as the
    listings show it, e.g. "1 forward + 1 backward".
    """

    text: str
    forwards: int = 1
    backwards: int = 0
    per: Per | None = None

    def __post_init__(self) -> None:
        if self.forwards < 0 or self.backwards < 0:
            raise MethodError(f"Cost: pass counts must be >= 0 ({self.text!r})")
        if self.per is not None and self.per not in PERS:
            raise MethodError(f"Cost: per must be one of {', '.join(PERS)}; got {self.per!r}")

    @property
    def many_passes(self) -> bool:
        """Whether the passes grow with a count (steps, samples, channels, windows, masks)."""
        return self.per is not None


@dataclass(frozen=True)
class Needs:
    """What a method needs besides an image, one field each; `words()` is how listings show it."""

    layer: bool = False  # a layer whose activations (and gradients) it reads
    head: bool = False  # a global-average-pool + linear head (CAM reads its class weights)
    baseline: bool = False  # a reference input x′ (integrated gradients)
    base_methods: tuple[str, ...] = ()  # it wraps one of these methods (SmoothGrad)
    window: bool = False  # an occlusion window size
    masks: bool = False  # a number of random masks (RISE)

    def words(self) -> list[str]:
        """The needs as the listings show them, e.g. ['layer', 'global-average-pool + linear
        head']; empty when an image is all the method needs."""
        flags = (
            (self.layer, "layer"),
            (self.head, "global-average-pool + linear head"),
            (self.baseline, "baseline"),
            (bool(self.base_methods), "base method"),
            (self.window, "window size"),
            (self.masks, "number of masks"),
        )
        return [word for needed, word in flags if needed]

    def __iter__(self) -> Iterator[str]:
        """The words, as `needs` was a tuple of them before it had fields (`list(info.needs)`,
        `"layer" in info.needs` keep working); code should read the fields."""
        return iter(self.words())


@dataclass(frozen=True)
class MethodInfo:
    """What a method is, what it needs and what it costs.

    `compute(recording, layer)` returns the raw signed map: (N, 3, H, W) for pixel methods,
    (N, h, w) at the layer's resolution for CAMs (the API upsamples those to the input), or
    (map, diagnostics) (see `RawMap`).
    `input_rules` are the backward rules it needs at the input ("plain", "guided",
    "deconvnet"); `layer_gradients` whether it reads the gradient at its layer; `order` its
    position in listings (10s gradient family, 20s CAMs, 30s perturbation CAMs, 40s
    perturbation pixel methods).
    """

    name: str
    kind: Kind
    summary: str
    formula: str
    paper: str
    cost: Cost
    compute: Compute
    needs: Needs = Needs()
    input_rules: tuple[str, ...] = ()
    layer_gradients: bool = False
    order: int = 100

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise MethodError(f"{self.name}: kind must be one of {', '.join(KINDS)}")
        if self.kind == "cam" and not self.needs.layer:
            raise MethodError(f"{self.name}: a CAM method needs a layer (Needs(layer=True))")
        if self.layer_gradients and not (self.needs.layer and self.cost.backwards):
            raise MethodError(f"{self.name}: layer gradients need a layer and a backward pass")

    @property
    def needs_layer(self) -> bool:
        """Whether it reads a layer (every CAM, guided Grad-CAM): it runs once per layer."""
        return self.needs.layer

    @property
    def wraps_method(self) -> bool:
        """Whether it wraps another method (SmoothGrad), named by its `base` parameter."""
        return bool(self.needs.base_methods)

    @property
    def per_channel(self) -> bool:
        """One forward per channel of the layer (Score-CAM, Ablation-CAM)."""
        return self.cost.per == "channel"

    @property
    def many_passes(self) -> bool:
        """Its passes grow with a count: slow on a CPU (the web page marks it)."""
        return self.cost.many_passes

    @property
    def parameters(self) -> tuple[str, ...]:
        """The keyword parameters its `compute` takes after (recording, layer), in order, e.g.
        ('baseline', 'steps', ...) for integrated gradients; a wrapping method (SmoothGrad)
        also passes its base method's on (see `cnnvis.methods.check_params`)."""
        found = list(inspect.signature(self.compute).parameters.values())[2:]
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return tuple(p.name for p in found if p.kind in kinds)

    @property
    def passes(self) -> str:
        """Its cost as the listings show it, e.g. "1 forward + 1 backward"."""
        return self.cost.text

    def to_row(self) -> dict[str, Any]:
        """The method as one JSON-able row: what `cnnvis methods`, the web page's /api/methods
        and the README's method table show."""
        return {
            "name": self.name,
            "kind": self.kind,
            "summary": self.summary,
            "formula": self.formula,
            "paper": self.paper,
            "passes": self.cost.text,
            "needs": self.needs.words(),
            "needs_layer": self.needs_layer,
            "many_passes": self.many_passes,
        }
