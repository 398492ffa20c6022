"""What a layer pattern ('blocks.*', 'layer4.*') names: the matching layers a map is useful at,
and at most `MAX_LAYERS` of them in a sweep.

A glob matches every sub-module below a name (`blocks.*` is 252 modules of EfficientNet-Lite0).
Useful are those with spatial output that are not a pass-through (Identity, dropout, DropPath),
not a squeeze-excitation gate (it only rescales its input's channels) and not a module whose
output is its enclosing module's very output when that one matches too (a conv-norm-act unit's
activation, a Sequential's last layer: the same map twice). A sweep then keeps whole levels of
nesting, outermost first, up to the cap (stages and blocks before the convolutions inside
them), and says what it left out and how to get it.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Sequence

import numpy as np
from torch import nn

from ..errors import Hint, LayerError
from ..model import compute_model
from .names import resolve_layer
from .probe import LayerInfo, _is_pass_through, probe

log = logging.getLogger(__name__)

MAX_LAYERS = 32  # layers of a sweep by pattern or "all" unless max_layers says otherwise


def pattern_layers(
    model: nn.Module, pattern: str, input_shape: Sequence[int] = (1, 3, 224, 224)
) -> list[str]:
    """The layers matching the glob `pattern` that a map is useful at, in forward order (when
    the pattern names only pass-through or repeated modules, those: the user asked for them)."""
    infos = probe(model, input_shape)
    matched = [i for i in infos if i.spatial and fnmatch.fnmatch(i.name, pattern)]
    if not matched:
        raise LayerError(f"no layer with a spatial output matches {pattern!r}", hint=Hint("layers"))
    modules = dict(compute_model(model).named_modules())
    by_name = {i.name: i for i in infos}
    names = {i.name for i in matched}
    useful = [i.name for i in matched if _useful(i, modules.get(i.name), names, by_name)]
    return useful or [i.name for i in matched]


def _useful(
    info: LayerInfo, module: nn.Module | None, matched: set[str], by_name: dict[str, LayerInfo]
) -> bool:
    if module is not None and (_is_pass_through(module) or is_squeeze_excitation(module)):
        return False
    outer = info.same_as
    while outer is not None:  # the same output as an enclosing matched module: shown there
        if outer in matched:
            return False
        outer = by_name[outer].same_as if outer in by_name else None
    return True


def is_squeeze_excitation(module: nn.Module) -> bool:
    """torchvision's SqueezeExcitation, timm's SqueezeExcite / SEModule / EffectiveSEModule."""
    kind = type(module).__name__
    return "SqueezeExcit" in kind or kind in ("SEModule", "EffectiveSEModule", "SEBlock")


def capped(names: Sequence[str], max_layers: int | None, what: str) -> list[str]:
    """At most `max_layers` of `names` (forward order kept): whole levels of nesting, outermost
    first; when even the outermost level has more, evenly spaced ones of it. What is left out
    is logged with how to get it (`what` names the request, e.g. "'blocks.*'")."""
    if max_layers is None or len(names) <= max_layers:
        return list(names)
    kept: set[str] = set()
    how = "the outermost levels of nesting"
    for depth in sorted({name.count(".") for name in names}):
        level = [n for n in names if n.count(".") == depth]
        if len(kept) + len(level) > max_layers:
            if not kept:  # one level is already too many: spread the picks over the depth
                picks = np.linspace(0, len(level) - 1, max_layers).round().astype(int)
                kept = {level[i] for i in picks}
                how = "evenly spaced"
            break
        kept.update(level)
    chosen = [n for n in names if n in kept]
    log.warning(
        "%s gives %d layers; the sweep shows %d of them (%s; at most %d by default): pass "
        "max_layers=%d (--max-layers %d) for all of them, or a narrower pattern",
        what,
        len(names),
        len(chosen),
        how,
        max_layers,
        len(names),
        len(names),
    )
    return chosen


def sweep_layers(
    model: nn.Module,
    layers: str | Sequence[str] = "all",
    input_shape: Sequence[int] = (1, 3, 224, 224),
    max_layers: int | None = None,
) -> list[str]:
    """The layers of a sweep, in forward order: "all" (every block along the main path with a
    spatial output: VGG's 31 `features.*` modules, ResNet's stem and 16 blocks, ...), a glob
    pattern over layer names (`features.*`, `layer4.*`: the matching layers a map is useful at,
    see `cnnvis.layers.patterns`), or an explicit list. "all" and patterns keep at most
    `max_layers` (None: every one; `cnnvis.sweep` passes `MAX_LAYERS` by default), logged."""
    infos = probe(model, input_shape)
    if isinstance(layers, str) and layers == "all":
        chosen = capped([i.name for i in infos if i.sweep], max_layers, "layers='all'")
    elif isinstance(layers, str):
        chosen = capped(pattern_layers(model, layers, input_shape), max_layers, repr(layers))
    else:
        for name in layers:
            resolve_layer(model, name)
        chosen = list(layers)
    if not chosen:
        raise LayerError("the model has no layer with a spatial output to sweep over")
    return chosen
