"""The images of an evaluation: paths, folders, samples, PIL images or tensors, named, and each
made into one model input."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..api import prepare_inputs
from ..files import image_files
from ..model import LoadedModel
from .errors import EvaluationError


def image_sources(images: Any) -> list[tuple[str, Any]]:
    """(name, source) pairs: folders are expanded to their image files (sorted); a tensor
    (N, C, H, W) gives one model input per row."""
    if isinstance(images, torch.Tensor):
        x = images if images.dim() == 4 else images[None]
        return [(f"tensor[{i}]", x[i : i + 1]) for i in range(x.shape[0])]
    items = list(images) if isinstance(images, list | tuple) else [images]
    found: list[tuple[str, Any]] = []
    for i, item in enumerate(items):
        if isinstance(item, str | os.PathLike) and Path(item).is_dir():
            files = image_files(item)  # a symlink loop is walked once
            if not files:
                raise EvaluationError(f"no image files in the folder {item}")
            found += [(str(p), p) for p in files]
        elif isinstance(item, str | os.PathLike):
            found.append((str(item), item))
        elif isinstance(item, torch.Tensor):
            found += [(f"tensor[{i}.{j}]", src) for j, (_, src) in enumerate(image_sources(item))]
        else:
            found.append((f"image[{i}]", item))
    if not found:
        raise EvaluationError("no images given")
    return found


def model_input(lm: LoadedModel, source: Any) -> tuple[torch.Tensor, tuple[int, int] | None]:
    """The model input (1, C, H, W) on the model's device, and the original (width, height)."""
    if isinstance(source, torch.Tensor):
        x, _ = prepare_inputs(lm, source)
        return x.to(lm.device), None
    from ..images import load_image

    image = load_image(source)
    x, _ = prepare_inputs(lm, image)
    return x.to(lm.device), image.size
