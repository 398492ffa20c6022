"""Deep Feature Factorization (Collins, Achanta & Süsstrunk, ECCV 2018).

A layer's activations over N images, clamped at 0 (what a ReLU lets through), are one
non-negative matrix A (C channels x N*h*w positions). NMF splits it into k concepts,
A ~ W H: W's column j (C,) is concept j's basis vector, a direction in channel space, and H's
row j, reshaped to (N, h, w), says how strongly each position of each image shows it. NMF
leaves the scale between the two free; here each map is 1 where its concept is strongest over
all images, so the basis vector is the concept at full strength. The
head's verdict on a concept is the model's output when the layer shows its basis vector
everywhere (see `head.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from ..api import ImageLike, prepare_inputs
from ..layers import default_layer
from ..model import LoadedModel, as_loaded, compute_model, imagenet_categories
from ..postprocess import upsample
from .activations import layer_activations
from .errors import ConceptError
from .head import concept_logits
from .nmf import nmf
from .result import ConceptResult, TopClass

log = logging.getLogger(__name__)

TOP = 3  # classes kept per concept


def dff(
    model: nn.Module | LoadedModel,
    images: ImageLike,
    layer: str | None = None,
    k: int = 4,
    *,
    seed: int = 0,
    head: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 32,
    max_iter: int = 1000,
) -> ConceptResult:
    """Factor `layer`'s activations over `images` into `k` concepts (Deep Feature Factorization).

    `images`: an image, a list of them (paths, "sample:NAME", PIL, arrays) or a preprocessed
    (N, C, H, W) tensor. `layer`: a dotted name (default: the last spatial layer). `seed`: the
    NMF's random start (scikit-learn's `init="random"` draws for `random_state=seed`). `head`:
    a callable from basis vectors (k, C) to logits (k, classes); default: the rest of the model
    run on each basis vector spread over the layer's grid.
    """
    loaded = as_loaded(model)
    if k < 1:
        raise ConceptError(f"k must be at least 1 concept, got {k}")
    module = compute_model(loaded.module)
    x, pictures = prepare_inputs(loaded, images)
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    x = x.to(device)
    name = layer or default_layer(module, (1, *x.shape[1:]))
    acts = layer_activations(module, x, name, batch_size).float().clamp_(min=0)
    n, channels, h, w = acts.shape
    _check_size(name, k, n, channels, h, w)
    matrix = acts.permute(1, 0, 2, 3).reshape(channels, n * h * w)
    if not bool(matrix.any()):
        raise ConceptError(
            f"layer {name!r} is zero (after clamping at 0) on every image: nothing to factor; "
            "choose a layer after a ReLU, or other images"
        )
    factors = nmf(matrix, k, seed=seed, max_iter=max_iter)
    log.debug("DFF at %s: %d iterations, error %.3f", name, factors.iterations, factors.error)
    # NMF leaves each concept's scale between w and h free: fix it so that a map is 1 where
    # its concept is strongest, and the basis vector is the concept at that full strength
    peak = factors.h.amax(dim=1).clamp_min(1e-12)
    basis = (factors.w * peak).T.contiguous()  # (k, C)
    layer_maps = (factors.h / peak[:, None]).reshape(k, n, h, w).permute(1, 0, 2, 3).contiguous()
    size = (int(x.shape[-2]), int(x.shape[-1]))
    maps = upsample(layer_maps.reshape(n * k, h, w), size).reshape(n, k, *size)
    if head is not None:
        with torch.no_grad():
            logits: torch.Tensor | None = head(basis).float()
    else:
        logits = concept_logits(module, name, basis, tuple(x.shape), (h, w))
    return ConceptResult(
        method="dff",
        layer=name,
        maps=maps,
        layer_maps=layer_maps,
        basis=basis,
        logits=logits,
        top_classes=_top_classes(loaded, logits),
        pictures=pictures,
        error=factors.error,
        iterations=factors.iterations,
        random_weights=loaded.random_weights,
        model_name=loaded.name,
    )


def _check_size(layer: str, k: int, n: int, channels: int, h: int, w: int) -> None:
    if k > channels:
        raise ConceptError(
            f"k={k} concepts cannot come from layer {layer!r}'s {channels} channels; "
            f"ask for at most {channels}"
        )
    if k > n * h * w:
        need = -(-k // (h * w))
        raise ConceptError(
            f"k={k} concepts need at least {k} positions, and layer {layer!r} gives {h}x{w} per "
            f"image on {n} image(s) ({n * h * w}); pass at least {need} images, an earlier "
            "layer, or a smaller k"
        )


def _top_classes(model: LoadedModel, logits: torch.Tensor | None) -> list[list[TopClass]]:
    """Each concept's TOP classes by softmax probability of its logits."""
    if logits is None:
        return []
    categories = model.categories
    if categories is None and logits.shape[1] == 1000:
        categories = imagenet_categories()
    probabilities = logits.softmax(dim=1).cpu()
    values, indices = probabilities.topk(min(TOP, logits.shape[1]), dim=1)
    return [
        [
            TopClass(int(i), _name(categories, int(i)), float(p))
            for p, i in zip(row_values, row_indices, strict=True)
        ]
        for row_values, row_indices in zip(values, indices, strict=True)
    ]


def _name(categories: list[str] | None, index: int) -> str:
    if categories is not None and 0 <= index < len(categories):
        return categories[index]
    return f"class {index}"
