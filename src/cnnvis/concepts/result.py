"""What a concept method returns: maps per concept per image, the concepts' basis vectors and
what the classifier head says about each."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class TopClass:
    """One class a concept votes for: its index, name and softmax probability."""

    index: int
    name: str
    probability: float


@dataclass(frozen=True)
class ConceptResult:
    """K concepts found at `layer` over N images.

    `maps` (N, K, H, W): how strongly each input pixel shows each concept (NMF coefficients,
    1 at the concept's strongest position over all images, upsampled bilinearly from
    `layer_maps` (N, K, h, w)); `basis` (K, C): each concept at that full strength in the
    layer's channels; `logits` (K, classes): the head's output for
    each concept (None when the model's output is not a class vector) and `top_classes` its
    top classes; `pictures` (N, 3, H, W) the images in [0, 1] as the model saw them; `error`
    the NMF's relative reconstruction error.
    """

    method: str
    layer: str
    maps: torch.Tensor
    layer_maps: torch.Tensor
    basis: torch.Tensor
    logits: torch.Tensor | None
    top_classes: list[list[TopClass]]
    pictures: torch.Tensor
    error: float
    iterations: int
    random_weights: bool = False
    model_name: str = "custom"

    @property
    def k(self) -> int:
        return int(self.basis.shape[0])

    def label(self, concept: int, top: int = 2) -> str:
        """'concept 1: tabby 41%, tiger cat 22%' (or 'concept 1' without a head)."""
        if not self.top_classes:
            return f"concept {concept}"
        votes = ", ".join(
            f"{c.name} {100 * c.probability:.0f}%" for c in self.top_classes[concept][:top]
        )
        return f"concept {concept}: {votes}"

    def summary(self) -> list[dict[str, object]]:
        """Each concept as plain data: its index, share of the activations and top classes."""
        share = self.layer_maps.sum(dim=(0, 2, 3)) * self.basis.norm(dim=1)
        share = share / share.sum().clamp_min(1e-12)
        return [
            {
                "concept": j,
                "share": round(float(share[j]), 4),
                "top_classes": [asdict(c) for c in self.top_classes[j]] if self.top_classes else [],
            }
            for j in range(self.k)
        ]

    def figure(self, top: int = 2) -> Figure:
        """Each image coloured by its strongest concept at every pixel (brightness: how strong,
        relative to the concept's maximum over all images), with a legend of what each concept
        votes for."""
        from .figure import concept_figure

        return concept_figure(self, top)

    def __repr__(self) -> str:
        n, k, h, w = self.maps.shape
        return (
            f"ConceptResult({self.method} at {self.layer!r}: {k} concepts over {n} image(s), "
            f"maps {h}x{w}, error {self.error:.3f})"
        )
