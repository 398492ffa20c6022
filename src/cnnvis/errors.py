"""The errors cnnvis raises: one hierarchy, each message says what was wrong and what to do."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CnnvisError(Exception):
    """Base class of every error cnnvis raises on purpose."""

    exit_code: int = 1


class ImageError(CnnvisError, ValueError):
    """An image could not be read, or is not an image (corrupt, empty, too large, wrong type)."""

    exit_code = 3


class ModelError(CnnvisError, ValueError):
    """A model could not be loaded or used (unknown name, bare state dict, unsupported output)."""

    exit_code = 4


class LayerError(CnnvisError, KeyError):
    """A layer name does not exist, or the layer cannot be used by the method asked for."""

    exit_code = 5

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MethodError(CnnvisError, ValueError):
    """An unknown method, or a method that cannot run on this model (e.g. CAM without a GAP head)."""

    exit_code = 6


class TargetError(CnnvisError, ValueError):
    """A target that is out of range, of the wrong length for the batch, or not understood."""

    exit_code = 7


def closest(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """The valid names closest to `name`, for 'did you mean' messages."""
    choices = list(choices)
    found = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not found:
        found = [c for c in choices if name.lower() in c.lower()][:n]
    return found


def unknown(kind: str, name: str, choices: Iterable[str], hint: str = "") -> str:
    """A message for an unknown name, listing the closest valid ones."""
    near = closest(name, choices)
    msg = f"unknown {kind} {name!r}"
    if near:
        msg += f"; did you mean: {', '.join(near)}?"
    if hint:
        msg += f" ({hint})"
    return msg
