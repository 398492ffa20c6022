"""Which layers can explain a unit target: those that run at or before the unit's layer.

A unit target (`blocks.5:3`) is the activation of one channel inside the network. A layer whose
output is computed after the unit's (`bn2` after `blocks.5`) cannot change it: the unit's
gradient there is zero and every CAM at that layer is blank. The default layer then moves to
the last layer with spatial output at or before the unit (said so in a log line); a layer the
user chose that runs after the unit is a LayerError naming the layers that work.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from torch import nn

from ..errors import Hint, LayerError
from .probe import LayerInfo, _is_pass_through, _is_pooling, probe

log = logging.getLogger(__name__)

SHOWN = 4  # layers named in a message, nearest the unit first


def _order(model: nn.Module, input_shape: Sequence[int]) -> tuple[list[LayerInfo], dict[str, int]]:
    infos = [i for i in probe(model, input_shape) if i.output_shape is not None]
    return infos, {info.name: n for n, info in enumerate(infos)}


def reaching_layers(
    model: nn.Module, unit_layer: str, input_shape: Sequence[int] = (1, 3, 224, 224)
) -> list[str] | None:
    """The layers with spatial output that finish at or before `unit_layer` (forward order),
    i.e. those whose gradient the unit can have; None when `unit_layer` did not run."""
    infos, position = _order(model, input_shape)
    end = position.get(unit_layer)
    if end is None:
        return None
    modules = dict(model.named_modules())
    return [
        i.name
        for i in infos[: end + 1]
        if i.spatial
        and i.name in modules
        and not (_is_pooling(modules[i.name]) or _is_pass_through(modules[i.name]))
    ]


def after_unit(
    model: nn.Module,
    layers: Sequence[str],
    unit_layer: str,
    input_shape: Sequence[int] = (1, 3, 224, 224),
) -> list[str]:
    """Those of `layers` that finish after `unit_layer` in the forward pass (they cannot
    change the unit); [] when the unit's layer or a layer did not run (nothing to say)."""
    _, position = _order(model, input_shape)
    end = position.get(unit_layer)
    if end is None:
        return []
    return [name for name in layers if position.get(name, -1) > end]


def default_for_unit(
    model: nn.Module, default: str, unit_layer: str, input_shape: Sequence[int]
) -> str:
    """`default`, or when it runs after the unit, the last layer with spatial output at or
    before the unit (logged); a LayerError when there is none."""
    if not after_unit(model, [default], unit_layer, input_shape):
        return default
    reaching = reaching_layers(model, unit_layer, input_shape) or []
    if not reaching:
        raise LayerError(
            f"no layer with spatial output runs at or before the unit target's layer "
            f"{unit_layer}, so CAM methods cannot explain it; use a pixel method such as "
            "'gradient' or 'guided-backprop'"
        )
    log.info(
        "the unit target lies in %s, which runs before the default layer %s (%s cannot change "
        "it); using %s, the last layer with spatial output at or before the unit",
        unit_layer,
        default,
        default,
        reaching[-1],
    )
    return reaching[-1]


def check_unit_layers(
    model: nn.Module, layers: Sequence[str], unit_layer: str, input_shape: Sequence[int]
) -> None:
    """A LayerError when a chosen layer runs after the unit (its map would be blank), naming
    the layers that work."""
    late = after_unit(model, layers, unit_layer, input_shape)
    if not late:
        return
    reaching = reaching_layers(model, unit_layer, input_shape) or []
    main_path = {i.name for i in probe(model, input_shape) if i.sweep}
    named = [name for name in reaching if name in main_path or name == unit_layer] or reaching
    nearest = list(reversed(named))[:SHOWN]
    works = ", ".join(nearest) + (", or an earlier one" if len(reaching) > SHOWN else "")
    which = "layer" if len(late) == 1 else "layers"
    raise LayerError(
        f"{which} {', '.join(late)} run{'s' * (len(late) == 1)} after the unit target's layer "
        f"{unit_layer}, so {'it' if len(late) == 1 else 'they'} cannot change the unit (the "
        f"gradient there is zero and the map would be blank); choose a layer at or before "
        f"{unit_layer}: {works}",
        hint=Hint("layers"),
    )


def layers_for_unit(
    model: nn.Module, layers: Sequence[str], unit_layer: str, input_shape: Sequence[int]
) -> list[str]:
    """`layers` without those that run after the unit (logged): a sweep over them would draw
    blank maps; a LayerError naming the layers that work when none is left."""
    late = set(after_unit(model, layers, unit_layer, input_shape))
    if not late:
        return list(layers)
    kept = [name for name in layers if name not in late]
    if not kept:
        check_unit_layers(model, layers, unit_layer, input_shape)
    log.info(
        "%d of the %d layers run after the unit target's layer %s and cannot change it; "
        "they are left out",
        len(late),
        len(layers),
        unit_layer,
    )
    return kept
