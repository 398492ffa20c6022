"""`available_models`: the models `load_model` accepts, and whether their weights are on disk."""

from __future__ import annotations

import fnmatch
from typing import Any

from .default_model import default_entry
from .offline_models import offline_entries
from .timm_loader import timm_entries
from .torchvision_loader import torchvision_entries


def available_models(pattern: str | None = None) -> list[dict[str, Any]]:
    """The models `load_model` accepts, with whether pretrained weights are already on disk.

    Each entry has `source` ("default", "offline", "torchvision", "timm"), `name` (what to pass
    to `load_model`), `weights` (the pretrained weights' tag, or None), `local` (True/False, or
    None when unknown) and `task` ("classification", "detection", "segmentation", "video"). timm's ~1,300 models are only listed when a `pattern` is given; the
    pattern is an fnmatch pattern, matched case-insensitively against the full name or the bare
    architecture name, e.g. "timm:*vit_tiny*" or "resnet*".
    """
    entries = [default_entry(), *offline_entries(), *torchvision_entries()]
    if pattern is not None:
        entries += timm_entries()
        entries = [e for e in entries if _matches(pattern, e["name"])]
    return entries


def _matches(pattern: str, full_name: str) -> bool:
    """fnmatch, case-insensitive, against `source:arch` or the bare arch."""
    pattern = pattern.lower()
    full_name = full_name.lower()
    bare = full_name.partition(":")[2] or full_name
    return fnmatch.fnmatchcase(full_name, pattern) or fnmatch.fnmatchcase(bare, pattern)
