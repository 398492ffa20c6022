"""Results: raw signed maps plus everything needed to reproduce and label them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


def short_list(items: Sequence[object], limit: int = 3) -> str:
    """'a, b, c' or 'a, b, c, ... (12 in all)' for a one-line repr."""
    shown = ", ".join(str(item) for item in items[:limit])
    return f"{shown}, ... ({len(items)} in all)" if len(items) > limit else shown


def shape(tensor: torch.Tensor | None) -> str:
    """(2, 224, 224) for a tensor, None for none: a tensor's repr without its values."""
    return "None" if tensor is None else str(tuple(tensor.shape))


@dataclass
class Prediction:
    """One of the top-k classes for one image."""

    index: int
    name: str
    probability: float

    def __iter__(self):  # so `index, name, p = prediction` works
        return iter((self.index, self.name, self.probability))

    def _repr_html_(self) -> str:
        from .notebook import prediction_html

        return prediction_html(self)


@dataclass
class Explanation:
    """The maps of one method for a batch of images.

    `map` is raw and signed: (N, 3, H, W) for pixel methods, (N, H, W) for CAMs, always at the
    model's input resolution. `layer_map` is a CAM at the layer's own resolution (N, h, w).
    `images` are the [0, 1] pictures the model saw (N, 3, H, W), for drawing. `notes` says
    what a user should know about how the result was obtained (an animation's first frame,
    a float32 copy of a half-precision model).
    """

    method: str
    map: torch.Tensor
    targets: list[int]
    target_names: list[str]
    probabilities: list[float]
    images: torch.Tensor
    layer: str | None = None
    layer_map: torch.Tensor | None = None
    model: str = "custom"
    params: dict[str, Any] = field(default_factory=dict)
    predictions: list[list[Prediction]] | None = None  # top-k per image, same forward
    notes: list[str] = field(default_factory=list)  # e.g. "only the first frame is used"
    random_weights: bool = False  # the model was random-init (figures' titles say so)

    @property
    def kind(self) -> str:
        return "pixel" if self.map.dim() == 4 else "cam"

    def __repr__(self) -> str:
        """One line: method, layer, images, shapes and what was explained; no tensor values."""
        where = f" @ {self.layer}" if self.layer else ""
        explained = [
            name if index < 0 or name == f"class {index}" else f"{index} {name}"
            for index, name in zip(self.targets, self.target_names, strict=False)
        ]
        layer_map = "" if self.layer_map is None else f", layer_map {shape(self.layer_map)}"
        return (
            f"Explanation({self.method}{where}, {len(self)} image{'s' * (len(self) != 1)}, "
            f"map {shape(self.map)}{layer_map}, target {short_list(explained)}, "
            f"model {self.model})"
        )

    def __len__(self) -> int:
        return self.map.shape[0]

    def __getitem__(self, i: int) -> Explanation:
        """The explanation of image `i` alone (batch dimension kept)."""
        sl = slice(i, i + 1)
        return Explanation(
            method=self.method,
            map=self.map[sl],
            targets=self.targets[sl],
            target_names=self.target_names[sl],
            probabilities=self.probabilities[sl],
            images=self.images[sl],
            layer=self.layer,
            layer_map=None if self.layer_map is None else self.layer_map[sl],
            model=self.model,
            params=dict(self.params),
            predictions=None if self.predictions is None else self.predictions[sl],
            notes=list(self.notes),
            random_weights=self.random_weights,
        )

    def title(self, i: int = 0) -> str:
        where = f" @ {self.layer}" if self.layer else ""
        return (
            f"{self.method}{where}: {self.target_names[i]} "
            f"({self.targets[i]}, p={self.probabilities[i]:.2f})"
        )

    # displays (drawing lives in cnnvis.render, the notebook glue in cnnvis.notebook)

    def figure(self, index: int = 0, cmap: str = "jet"):
        """The tutorial's panel for image `index` as a matplotlib Figure."""
        from .render import explanation_figure

        return explanation_figure(self, index, cmap)

    def show(self, index: int = 0, cmap: str = "jet") -> None:
        """Draw the tutorial's panel for image `index` with matplotlib (inline in Jupyter)."""
        from .notebook import show_figure

        show_figure(self.figure(index, cmap))

    def _repr_png_(self) -> bytes:
        from .notebook import explanation_png

        return explanation_png(self)

    def _repr_html_(self) -> str:
        from .notebook import explanation_html

        return explanation_html(self)


@dataclass
class Sweep:
    """One method over many layers: `explanations[layer]` for each layer, in forward order."""

    method: str
    explanations: dict[str, Explanation]
    shapes: dict[str, tuple[int, ...]]

    @property
    def layers(self) -> list[str]:
        return list(self.explanations)

    def __getitem__(self, layer: str) -> Explanation:
        return self.explanations[layer]

    def __len__(self) -> int:
        return len(self.explanations)

    def __repr__(self) -> str:
        """One line: method, layers, images and map shape; no tensor values."""
        first = next(iter(self.explanations.values()), None)
        images = "" if first is None else f", {len(first)} image{'s' * (len(first) != 1)}"
        maps = "" if first is None else f", maps {shape(first.map)}"
        return (
            f"Sweep({self.method}, {len(self)} layer{'s' * (len(self) != 1)}: "
            f"{short_list(self.layers)}{images}{maps})"
        )

    def figure(self, index: int = 0, cmap: str = "jet"):
        """One panel per layer (name and output shape) as a matplotlib Figure."""
        from .render import sweep_figure

        return sweep_figure(self, index, cmap)

    def show(self, index: int = 0, cmap: str = "jet") -> None:
        """Draw the per-layer grid with matplotlib (inline in Jupyter)."""
        from .notebook import show_figure

        show_figure(self.figure(index, cmap))

    def _repr_png_(self) -> bytes:
        from .notebook import sweep_png

        return sweep_png(self)

    def _repr_html_(self) -> str:
        from .notebook import sweep_html

        return sweep_html(self)
