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

Sign = Literal["magnitude", "signed", "mean-relative"]
"""How a pixel map's values read, which decides how it is drawn (CAMs are drawn ReLU'd, as
their definition says):
magnitude: the size is what counts; a gradient's sign says which way a pixel would move the
score, not for or against the class (gradient, guided backprop, deconvnet, guided Grad-CAM):
drawn as |map|, labelled so.
signed: positive is evidence for the class, negative against, zero no effect (gradient x
input, integrated gradients, gradient-SHAP, occlusion): a diverging colormap centred at zero.
mean-relative: an expected score whose meaning is its difference from the mean over the image
(RISE): drawn as map − mean on the diverging colormap."""

KINDS: tuple[Kind, ...] = get_args(Kind)
SIGNS: tuple[Sign, ...] = get_args(Sign)
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


LayerKind = Literal["batchnorm", "depthwise"]
"""Kinds of layer a caveat can name: BatchNorm (any `_BatchNorm`), depthwise convolution (a
`Conv2d` with groups == in_channels > 1)."""


CAVEAT_WORDS: dict[LayerKind, str] = {
    "batchnorm": "BatchNorm",
    "depthwise": "depthwise convolutions",
}


@dataclass(frozen=True)
class Caveat:
    """A known way a method's map misleads on some architectures: on a model with any of the
    `layers` kinds, figures of the method carry `note` (one line)."""

    layers: tuple[LayerKind, ...]
    note: str

    def found_in(self, module: torch.nn.Module) -> list[LayerKind]:
        """The kinds of `layers` that `module` has (empty: the caveat does not apply)."""
        found: list[LayerKind] = []
        for kind in self.layers:
            if any(_is_kind(m, kind) for m in module.modules()):
                found.append(kind)
        return found


def _is_kind(module: torch.nn.Module, kind: LayerKind) -> bool:
    """Whether one module is a layer of `kind`."""
    if kind == "batchnorm":
        return isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
    if not isinstance(module, torch.nn.Conv2d):
        return False
    groups, inputs = int(module.groups), int(module.in_channels)
    return groups > 1 and groups == inputs


@dataclass(frozen=True)
class MethodInfo:
    """What a method is, what it needs and what it costs.

    `compute(recording, layer)` returns the raw signed map: (N, 3, H, W) for pixel methods,
    (N, h, w) at the layer's resolution for CAMs (the API upsamples those to the input), or
    (map, diagnostics) (see `RawMap`).
    `sign` says how its values read, and so how it is drawn (see `Sign`); `caveats` where its
    maps are known to mislead (see `caveat_notes`).
    `input_rules` are the backward rules it needs at the input ("plain", "guided",
    "deconvnet"); `layer_gradients` whether it reads the gradient at its layer; `order` its
    position in listings (10s gradient family, 20s CAMs, 30s perturbation CAMs, 40s
    perturbation pixel methods); `scripted=False`: it cannot run on a TorchScript model (LRP
    needs the layers of an nn.Module).
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
    sign: Sign = "magnitude"
    caveats: tuple[Caveat, ...] = ()
    scripted: bool = True  # False: it needs the layers of an nn.Module (LRP), not TorchScript

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise MethodError(f"{self.name}: kind must be one of {', '.join(KINDS)}")
        if self.sign not in SIGNS:
            raise MethodError(f"{self.name}: sign must be one of {', '.join(SIGNS)}")
        if self.kind == "cam" and not self.needs.layer:
            raise MethodError(f"{self.name}: a CAM method needs a layer (Needs(layer=True))")
        if self.layer_gradients and not (self.needs.layer and self.cost.backwards):
            raise MethodError(f"{self.name}: layer gradients need a layer and a backward pass")

    @property
    def signed(self) -> bool:
        """Whether its map has a sign worth drawing (a diverging colormap centred at zero)."""
        return self.sign != "magnitude"

    def caveat_notes(self, module: torch.nn.Module) -> list[str]:
        """The one-line notes of the caveats that apply to `module`, each naming what it has."""
        notes = []
        for caveat in self.caveats:
            found = caveat.found_in(module)
            if found:
                has = " and ".join(CAVEAT_WORDS[kind] for kind in found)
                notes.append(f"{self.name}: {caveat.note} (this model has {has})")
        return notes

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
