"""Similarity targets: the cosine similarity of an image's embedding to a reference.

The embedding is the model's output, or with `layer` that layer's activation, averaged over
space (N, C, H, W) or tokens (N, T, D) into a vector per image. The reference is an image (a
path, PIL image, or a model-input tensor (C, H, W) / (1, C, H, W)), embedded the same way
when the target is bound, or a given vector (D,) / one per image (N, D).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import TargetError
from .base import Activations, Context


def embedding(value: Any, where: str) -> torch.Tensor:
    """A vector per image (N, D) from an output or activation: a tensor (N, D), (N, T, D)
    tokens averaged, (N, C, H, W) or (N, C, T, H, W) averaged over space (and time)."""
    found = value
    if isinstance(found, Mapping):
        tensors = [v for v in found.values() if isinstance(v, torch.Tensor)]
        found = tensors[0] if len(tensors) == 1 else found.get("embedding", found.get("out"))
    elif isinstance(found, Sequence) and found and isinstance(found[0], torch.Tensor):
        found = found[0]
    if not isinstance(found, torch.Tensor) or found.dim() < 2 or found.dim() > 5:
        shape = tuple(found.shape) if isinstance(found, torch.Tensor) else type(found).__name__
        raise TargetError(
            f"a similarity target needs an embedding (N, D), tokens (N, T, D) or feature maps "
            f"(N, C, H, W) from {where}, got {shape}; choose a layer with layer=..."
        )
    if found.dim() == 3:
        return found.mean(dim=1)
    return found.flatten(2).mean(dim=2) if found.dim() > 2 else found


def _is_vector(reference: Any) -> bool:
    return (
        isinstance(reference, torch.Tensor)
        and reference.dim() in (1, 2)
        and reference.is_floating_point()
    )


@dataclass(frozen=True, eq=False)
class Similarity:
    """cos(e(x), e(reference)): how much an image's embedding points the way of a reference's.
    `reference`: an image (path, PIL image, model-input tensor) or a vector (D,) / (N, D);
    `layer`: the embedding's layer (default: the model's output). Written
    `similar:other.jpg`."""

    reference: Any
    layer: str | None = None
    needs_logits = False

    @property
    def layers(self) -> tuple[str, ...]:
        """The embedding's layer, if it is not the output."""
        return () if self.layer is None else (self.layer,)

    def __str__(self) -> str:
        where = f"@{self.layer}" if self.layer else ""
        if isinstance(self.reference, str | Path):
            return f"similar:{self.reference}{where}"
        what = "vector" if _is_vector(self.reference) else "image"
        return f"similar:<{what}>{where}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Similarity) or other.layer != self.layer:
            return False
        mine, theirs = self.reference, other.reference
        if isinstance(mine, torch.Tensor) and isinstance(theirs, torch.Tensor):
            return bool(torch.equal(mine.cpu(), theirs.cpu()))
        return bool(mine is theirs or (type(mine) is type(theirs) and mine == theirs))

    __hash__ = None  # type: ignore[assignment]

    def embed(self, output: Any, activations: Activations) -> torch.Tensor:
        """The embedding of each image (N, D)."""
        if self.layer is None:
            return embedding(output, "the model's output")
        if self.layer not in activations:
            raise TargetError(f"similarity target: layer {self.layer} was not recorded")
        return embedding(activations[self.layer], f"layer {self.layer}")

    def bind(self, output: Any, activations: Activations, context: Context) -> Similarity:
        """The reference as vectors (1 or N, D): a reference image embedded by the model."""
        rows = context.rows
        if _is_vector(self.reference):
            vectors = self.reference if self.reference.dim() == 2 else self.reference[None]
        else:
            image = self.reference
            if isinstance(image, torch.Tensor) and image.dim() in (3, 4):
                x = image if image.dim() == 4 else image[None]
            else:
                x = context.image_input(image)
            if context.forward is None:
                raise TargetError("a similarity target to an image needs the model to run on it")
            out, acts = context.forward(x, self.layers)
            vectors = self.embed(out, acts).detach()
        if vectors.shape[0] not in (1, rows):
            raise TargetError(
                f"a similarity target has {vectors.shape[0]} reference vectors for a batch of "
                f"{rows} images; give one, or one per image"
            )
        dim = self.embed(output, activations).shape[1]
        if vectors.shape[1] != dim:
            raise TargetError(
                f"the reference has {vectors.shape[1]} dimensions and the embedding {dim}; "
                "give a reference from the same layer"
            )
        return Similarity(vectors.detach(), self.layer)

    def take(self, rows: torch.Tensor) -> Similarity:
        """The references of the images `rows` (the same target when one serves all)."""
        ref = self.reference
        if not _is_vector(ref) or ref.dim() == 1 or ref.shape[0] == 1:
            return self
        return Similarity(ref[rows.to(ref.device)], self.layer)

    def scores(self, output: Any, activations: Activations) -> torch.Tensor:
        """cos(e(x_n), r_n) for each image (N,)."""
        if not _is_vector(self.reference):
            raise TargetError("a similarity target to an image must be bound to a batch first")
        emb = self.embed(output, activations)
        ref = self.reference.to(emb.device, emb.dtype)
        ref = ref[None] if ref.dim() == 1 else ref
        if ref.shape[1] != emb.shape[1]:
            raise TargetError(
                f"the reference has {ref.shape[1]} dimensions and the embedding {emb.shape[1]}"
            )
        return F.cosine_similarity(emb, ref.expand_as(emb), dim=1)
