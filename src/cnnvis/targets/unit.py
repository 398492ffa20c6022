"""A unit inside the network as the target: one channel of a layer, summed, max or at a point."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import TargetError
from .base import Activations


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

    needs_logits = None  # the classifier's top-1 is shown where there is one

    @property
    def layers(self) -> tuple[str, ...]:
        """The one layer the unit lives in."""
        return (self.layer,)

    def scores(self, output: Any, activations: Activations | None = None) -> torch.Tensor:
        """Per-image scores (N,) from the unit's layer in `activations`; called with the
        layer's activation alone (`scores(activation)`), from that activation."""
        if activations is None:
            return self.of_activation(output)
        if self.layer not in activations:
            raise TargetError(
                f"unit target {self}: layer {self.layer} was not recorded (or did not run)"
            )
        return self.of_activation(activations[self.layer])

    def of_activation(self, activation: torch.Tensor) -> torch.Tensor:
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
