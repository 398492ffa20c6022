"""What to maximize, and the hooked forward pass that measures it.

A target is a class logit (an int after resolution) or a `cnnvis.targets.UnitTarget`: one
channel of a layer averaged over space (`blocks.3:5`), its maximum (`blocks.3:5@max`), or one
neuron (`blocks.3:5@2,4`, a position in the layer's grid at the optimized image's size).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import torch
from torch import nn

from ..errors import CnnvisError, LayerError, TargetError
from ..forwards import hooked, model_state_guard
from ..layers import resolve_layer
from ..targets import UnitTarget, parse_target, resolve_targets, select_logits

Target = int | UnitTarget


class FeatureError(CnnvisError, ValueError):
    """A feature-visualization setting that cannot work (steps, size, k, an empty folder)."""

    exit_code = 2


TargetLike = int | str | UnitTarget
CLASS_PREFIX = "class:"


def parse_feature_target(spec: TargetLike) -> int | str | UnitTarget:
    """A target as written: 1, "1", "class:1", "goldfish", "class:goldfish" (class logits),
    "LAYER:CHANNEL", "LAYER:CHANNEL@max", "LAYER:CHANNEL@Y,X" (see `parse_target`)."""
    if isinstance(spec, UnitTarget | int) and not isinstance(spec, bool):
        return spec
    if not isinstance(spec, str):
        raise TargetError(
            f"cannot use a {type(spec).__name__} as a feature target; give a class index or "
            "name, 'class:INDEX', or 'LAYER:CHANNEL[@Y,X]'"
        )
    text = spec.strip()
    if text.lower().startswith(CLASS_PREFIX):
        rest = text[len(CLASS_PREFIX) :].strip()
        return int(rest) if rest.isdigit() else rest
    parsed = parse_target(text)
    if parsed is None:
        raise TargetError(
            "feature visualization needs an explicit target ('top1' needs an image): give a "
            "class index or name, 'class:INDEX', or 'LAYER:CHANNEL[@Y,X]'"
        )
    return parsed


def common_layer(targets: Sequence[int | str | UnitTarget]) -> str | None:
    """The one layer all unit targets read (None for class targets); mixing is refused."""
    layers = {t.layer if isinstance(t, UnitTarget) else None for t in targets}
    if len(layers) != 1:
        raise TargetError(
            "the targets of one batch must all be class logits or all units of one layer; "
            f"got {sorted(str(x) for x in layers)}"
        )
    return layers.pop()


def scores(
    targets: Sequence[Target], value: torch.Tensor, output_key: str | None = None
) -> torch.Tensor:
    """Per-image scores (N,): image i's target read from the logits or the layer's activation.

    Channel targets ("sum" reduction) are the channel's *mean* over space, so scores do not grow
    with the image size.
    """
    if isinstance(targets[0], UnitTarget):
        units = [t for t in targets if isinstance(t, UnitTarget)]
        if len(units) != len(targets):
            raise TargetError("the targets of one batch must all be class logits or all units")
        area = value.shape[2] * value.shape[3] if value.dim() == 4 else 1
        per_image = [
            t.scores(value[i : i + 1]) / (area if t.reduce == "sum" else 1)
            for i, t in enumerate(units)
        ]
        return torch.cat(per_image)
    logits = select_logits(value, output_key)
    index = torch.tensor(list(targets), device=logits.device)
    return logits.gather(1, index[:, None]).squeeze(1)


def resolve_classes(
    specs: Sequence[int | str | UnitTarget], logits: torch.Tensor, categories: Sequence[str] | None
) -> list[Target]:
    """Class names -> indices (checked against the logits' width); units pass through."""
    resolved: list[Target] = []
    for spec in specs:
        if isinstance(spec, UnitTarget):
            resolved.append(spec)
        else:
            resolved.append(int(resolve_targets(spec, logits[:1], categories)[0]))
    return resolved


class _StopForward(Exception):
    """Raised by the hook once the layer we need has run: the rest of the net is skipped."""


class Forward:
    """`forward(x)`: the model's output (layer None) or the output of `layer`.

    With `stop_at_layer` the forward ends as soon as the layer has run (set it only for a layer
    that runs once per forward: `calls` counts the runs of the last forward).
    """

    def __init__(self, module: nn.Module, layer: str | None) -> None:
        self.module, self.layer = module, layer
        self.stop_at_layer = False
        self.calls = 0
        self._out: torch.Tensor | None = None

    def hook(self, _module: nn.Module, _args: Any, output: Any) -> None:
        if not isinstance(output, torch.Tensor):
            raise LayerError(
                f"layer {self.layer!r} returns a {type(output).__name__}, not a tensor; "
                "pick a layer with a tensor output (see `cnnvis layers`)"
            )
        self.calls += 1
        # a clone is safe from in-place ops that later layers may apply to the output
        self._out = output if self.stop_at_layer else output.clone()
        if self.stop_at_layer:
            raise _StopForward

    def __call__(self, x: torch.Tensor) -> Any:
        if self.layer is None:
            return self.module(x)
        self._out, self.calls = None, 0
        with suppress(_StopForward):
            self.module(x)
        if self._out is None:
            raise LayerError(f"layer {self.layer!r} did not run in the forward pass")
        return self._out


@contextmanager
def hooked_forward(module: nn.Module, layer: str | None) -> Iterator[Forward]:
    """A `Forward` over the model; for as long as the context lasts the model is locked and in
    eval mode (`forwards.model_state_guard`). On exit, also on error, the hook is removed and
    every module's `training` flag is put back. Gradients are the caller's to switch."""
    forward = Forward(module, layer)
    hooks = [] if layer is None else [(resolve_layer(module, layer), forward.hook)]
    with model_state_guard(module), hooked(hooks):
        yield forward
