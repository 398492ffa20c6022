"""Ground-truth labels (class folder names, CSV labels) as the model's class indices.

A label is a class index ("281"), a class name ("tabby cat", "Tabby_Cat"), or, for models with
the 1000 ImageNet-1k classes, a WordNet ID ("n02123045") as in the folders of ImageNet's own
train/val trees (the order of the 1000 IDs is the class order; the list ships with timm).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from ..errors import TargetError, closest

_SEPARATORS = re.compile(r"[\s_\-]+")
_WNID = re.compile(r"n\d{8}")
IMAGENET_CLASSES = 1000


@functools.cache
def imagenet_wnids() -> dict[str, int]:
    """{WordNet ID: ImageNet-1k class index}, from timm's bundled synset list (no download)."""
    try:
        from timm.data import ImageNetInfo
    except ImportError:  # timm < 0.9.8
        return {}
    names = ImageNetInfo().label_names()
    return {wnid: index for index, wnid in enumerate(names)} if len(names) == 1000 else {}


def _norm(name: str) -> str:
    """'Golden_Retriever' and 'golden retriever' alike: lower case, one space between words."""
    return _SEPARATORS.sub(" ", name.strip().lower()).strip()


def label_index(label: str, categories: Sequence[str] | None, classes: int) -> int | None:
    """A label's class index: an integer label in range, a category name (case, spaces,
    underscores and hyphens ignored) or an ImageNet-1k WordNet ID; None when it matches none."""
    text = label.strip()
    if text.isdigit():
        index = int(text)
        return index if index < classes else None
    if classes == IMAGENET_CLASSES and _WNID.fullmatch(text):
        return imagenet_wnids().get(text)
    if categories:
        wanted = _norm(text)
        for index, name in enumerate(categories):
            if _norm(name) == wanted:
                return index
    return None


def label_indices(
    labels: Sequence[str | None], categories: Sequence[str] | None, classes: int
) -> dict[str, int | None]:
    """{label: class index or None} for every distinct label."""
    return {
        label: label_index(label, categories, classes)
        for label in dict.fromkeys(labels)
        if label is not None
    }


def require_label_targets(
    labels: Sequence[str | None],
    categories: Sequence[str] | None,
    classes: int,
    relpaths: Sequence[str],
) -> list[int]:
    """One class index per image for `--target label`, or a TargetError saying what to fix."""
    missing = [rel for rel, label in zip(relpaths, labels, strict=True) if label is None]
    if missing:
        raise TargetError(
            f"--target label needs a label for every image, and {len(missing)} have none "
            f"(e.g. {missing[0]}); use an ImageFolder tree (one sub-folder per class, no images "
            "at the top) or a CSV list with a 'label' column, or use --target top1 or an index"
        )
    mapping = label_indices(labels, categories, classes)
    unknown = [label for label, index in mapping.items() if index is None]
    if unknown:
        wnid = " or an ImageNet WordNet ID (n02123045)" if classes == IMAGENET_CLASSES else ""
        hint = (
            f"folder names must be one of the model's {classes} class names, an index "
            f"0..{classes - 1}{wnid}"
            if categories
            else f"this model has no class names, so labels must be indices 0..{classes - 1}"
        )
        near = closest(unknown[0], categories or [])
        did = f"; for {unknown[0]!r} did you mean: {', '.join(near)}?" if near else ""
        raise TargetError(
            f"--target label: {len(unknown)} label(s) match no class of the model: "
            f"{', '.join(map(repr, unknown[:5]))}{' ...' if len(unknown) > 5 else ''} ({hint}{did})"
        )
    # here every image has a label and every label an index (the errors above say otherwise)
    known = {label: index for label, index in mapping.items() if index is not None}
    return [known[label] for label in labels if label is not None]
