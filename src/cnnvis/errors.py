"""The errors cnnvis raises: one hierarchy, each message says what was wrong and what to do.

Every error cnnvis raises on purpose is a `CnnvisError`; the command line prints its message on
one line and exits with its code (the web API answers 422 with the class name in `error`):

==================  =========  ==========================================================
error               exit code  when
==================  =========  ==========================================================
CnnvisError         1          base class; also "some images failed, the others written"
ImageError          3          an image is missing, empty, truncated, not an image (text,
                               PDF), over the pixel limit (`max_pixels`,
                               `CNNVIS_MAX_PIXELS`, `--max-pixels`), an array or tensor of
                               the wrong shape / dtype / values, or an empty batch
ModelError          4          a model cannot be loaded or used: unknown name, bare state
                               dict, output without logits (`output=` / `--output` picks
                               one), NaN or infinite outputs, not an `nn.Module`
LayerError          5          a layer name does not exist, or the layer (or model) has no
                               spatial output for a CAM method
MethodError         6          an unknown method, a bad parameter value, a method that
                               cannot run on this model (CAM without a GAP head, layer
                               methods on TorchScript), or a map with NaN / infinity
TargetError         7          a target out of range, a list of the wrong length, an
                               unknown class name, or of a type that is not a class
OutputError         8          an output folder that holds files cnnvis did not write
                               (refused unless `force=True` / `--force`), or is a file
ParamError          9          a method parameter the method does not have, or not
                               METHOD.NAME=VALUE (a `MethodError`; names the valid ones)
==================  =========  ==========================================================

(2 is argparse's usage error, 130 an interrupt.) Each class also derives from the built-in
error it refines (`ValueError`, or `KeyError` for `LayerError`), so `except ValueError` code
keeps working. Exceptions raised by the user's model itself while it runs its forward pass
(a forward hook of theirs, a shape the model rejects) are the model's and propagate unchanged.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

HintKind = Literal[
    "layers",  # the list of the model's layers
    "methods",  # the list of methods (`detail="torchscript"`: those that run on TorchScript)
    "models",  # the list of model names
    "samples",  # the list of bundled sample photos
    "max-pixels",  # the image pixel limit can be raised
    "output",  # the model's output has several entries: pick one (`detail`: the keys)
]


@dataclass(frozen=True)
class Hint:
    """What the user can do next, as data: each front end (Python, the command line, the web
    page) says it in its own words (`PYTHON_HINTS`, the CLI's and the web app's tables), so
    rewording a message never breaks a front end's advice."""

    kind: HintKind
    detail: str = ""


def _python_output_hint(hint: Hint) -> str:
    keys = f" to choose one of {hint.detail}" if hint.detail else ""
    return f"pass output=KEY (--output KEY){keys}"


# How the library says each hint to a Python user (what `str(error)` appends).
PYTHON_HINTS: dict[str, Callable[[Hint], str]] = {
    "layers": lambda h: "see cnnvis.list_layers(model)",
    "methods": lambda h: (
        "methods that work: cnnvis.list_methods(torchscript=True)"
        if h.detail == "torchscript"
        else "see cnnvis.list_methods()"
    ),
    "models": lambda h: "see cnnvis.zoo.available_models()",
    "samples": lambda h: "see cnnvis.list_samples()",
    "max-pixels": lambda h: "or raise max_pixels",
    "output": _python_output_hint,
}


class CnnvisError(Exception):
    """Base class of every error cnnvis raises on purpose.

    `CnnvisError(message, hint=Hint("layers"))`: `message` says what went wrong, the optional
    `hint` what to do next; `str(error)` is the message followed by the hint in Python's words,
    and `error.render(words)` says the hint in a front end's words instead."""

    exit_code: int = 1

    def __init__(self, message: object = "", *args: object, hint: Hint | None = None) -> None:
        super().__init__(message, *args)
        self.message = str(message)
        self.hint = hint

    def render(self, words: Mapping[str, Callable[[Hint], str]] = PYTHON_HINTS) -> str:
        """The message with its hint said by `words` (a table from hint kind to text; a kind
        missing from it, or an empty text, leaves the hint out)."""
        if self.hint is None:
            return self.message
        said = words[self.hint.kind](self.hint) if self.hint.kind in words else ""
        if not said:
            return self.message
        return f"{self.message} {said}" if said.startswith("or ") else f"{self.message}; {said}"

    def __str__(self) -> str:
        return self.render()


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
        return self.render()


class MethodError(CnnvisError, ValueError):
    """An unknown method, or a method that cannot run on this model (e.g. CAM without a GAP head)."""

    exit_code = 6


class ParamError(MethodError):
    """A method parameter the method does not have (or not METHOD.NAME=VALUE); the message
    names the method's valid parameters. A `MethodError` (so `except MethodError` catches it)
    with an exit code of its own."""

    exit_code = 9


class TargetError(CnnvisError, ValueError):
    """A target that is out of range, of the wrong length for the batch, or not understood."""

    exit_code = 7


class OutputError(CnnvisError, FileExistsError):
    """An output folder cnnvis may not write into: it holds files of others, or is a file."""

    exit_code = 8


def closest(name: object, choices: Iterable[str], n: int = 5) -> list[str]:
    """The valid names closest to `name`, for 'did you mean' messages."""
    text, options = str(name), [str(c) for c in choices]
    found = difflib.get_close_matches(text, options, n=n, cutoff=0.5)
    if not found:
        found = [c for c in options if text.lower() in c.lower()][:n]
    return found


def unknown(kind: str, name: object, choices: Iterable[str], hint: str = "") -> str:
    """A message for an unknown name, listing the closest valid ones (`hint`: advice in words
    that hold for every front end; advice that names a command or function is a `Hint`)."""
    near = closest(name, choices)
    msg = f"unknown {kind} {name!r}"
    if near:
        msg += f"; did you mean: {', '.join(near)}?"
    if hint:
        msg += f" ({hint})"
    return msg
