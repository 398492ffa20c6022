"""The one reading of a layer request, for every front end (library, command line, web page,
batch runs, evaluation): "auto", names, comma-separated lists, glob patterns."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from torch import nn

from ..errors import Hint, LayerError
from .names import resolve_layer
from .patterns import pattern_layers
from .probe import default_layer
from .units import after_unit, check_unit_layers, default_for_unit

log = logging.getLogger(__name__)

LayerRequest = str | Sequence[str | None] | None
_GLOB = frozenset("*?[")


def requested_layers(
    model: nn.Module,
    request: LayerRequest,
    *,
    needed: bool = True,
    input_shape: Sequence[int] = (1, 3, 224, 224),
    unit_layer: str | None = None,
) -> list[str]:
    """The layers that `request` names, checked against `model`, in the order given.

    - None, "auto", "" or an empty list: the default layer (the last with a spatial output,
      see `default_layer`; logged once here) when `needed`.
    - "layer3,layer4" or ["layer3", "layer4"]: those names (None entries are skipped); names
      with DataParallel's `module.` prefix are accepted.
    - "layer4.*": a glob pattern, the matching layers a map is useful at, in forward order
      (see `cnnvis.layers.patterns`; a pattern that matches none is an error).
    - `needed=False` (no method asked for takes a layer): the names are still checked (a wrong
      name is an error even when unused) and the answer is [].
    "auto" mixed with names is an error. `input_shape` is the shape the model is probed with
    for the default layer and patterns: (1, C, H, W) of the inputs to explain.
    `unit_layer`: the layer of a unit target. Only layers at or before it can change the unit:
    the default moves to the last spatial layer at or before it (logged), a pattern keeps the
    layers that can, a named layer after it is a LayerError naming those that work.
    """
    shape = (1, *tuple(input_shape)[1:])
    names = ["auto" if n.lower() == "auto" else n for n in _names(request)]
    if "auto" in names and len(names) > 1:
        raise LayerError("'auto' cannot be mixed with layer names; give names or auto")
    names = [n for n in names if n != "auto"]
    found: list[str] = []
    for name in names:
        found += _expand(model, name, shape, unit_layer)
    if not needed:
        return []
    if not found:
        default = default_layer(model, shape)
        if unit_layer is not None:
            chosen = default_for_unit(model, default, unit_layer, shape)
            if chosen != default:
                return [chosen]
        log.info("using the default layer %s (the last with spatial output)", default)
        return [default]
    if unit_layer is not None:
        check_unit_layers(model, found, unit_layer, shape)
    return list(dict.fromkeys(found))


def _names(request: LayerRequest) -> list[str]:
    if request is None:
        return []
    if isinstance(request, str):
        return [n.strip() for n in request.split(",") if n.strip()]
    if isinstance(request, Sequence) and all(n is None or isinstance(n, str) for n in request):
        return [n.strip() for name in request if name for n in name.split(",") if n.strip()]
    raise LayerError(
        f"layers must be a layer name, a list of names or None, got {request!r}",
        hint=Hint("layers"),
    )


def _expand(
    model: nn.Module, name: str, input_shape: Sequence[int], unit_layer: str | None = None
) -> list[str]:
    """[name] for a module name; the matching spatial layers for a glob pattern (those at or
    before `unit_layer` when given)."""
    if not _GLOB.intersection(name):
        resolve_layer(model, name)
        return [name]
    matched = pattern_layers(model, name, input_shape)
    if unit_layer is not None:
        late = set(after_unit(model, matched, unit_layer, input_shape))
        if late and len(late) < len(matched):
            log.info(
                "%d of the layers matching %r run after the unit target's layer %s and cannot "
                "change it; they are left out",
                len(late),
                name,
                unit_layer,
            )
            matched = [m for m in matched if m not in late]
    return matched
