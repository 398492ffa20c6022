"""One registry of methods by name: the API, the CLI choices, the docs table and the tests read it."""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Mapping
from typing import Any

from ..errors import Hint, MethodError, ParamError, closest, unknown
from .facts import MethodInfo

_REGISTRY: dict[str, MethodInfo] = {}


def register(info: MethodInfo) -> MethodInfo:
    """Add a method; its name must be new."""
    if info.name in _REGISTRY:
        raise MethodError(f"method {info.name!r} is already registered")
    _REGISTRY[info.name] = info
    return info


def get_method(name: str) -> MethodInfo:
    """The method registered as `name` (e.g. 'grad-cam'); a MethodError lists close names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        names = [m.name for m in list_methods()]
        raise MethodError(unknown("method", name, names), hint=Hint("methods")) from None


def list_methods(pattern: str = "*", *, torchscript: bool = False) -> list[MethodInfo]:
    """Registered methods whose name matches the glob `pattern`, by `order`, then name;
    `torchscript=True`: only those that run on a TorchScript model (see `scripted_methods`)."""
    found = [m for n, m in _REGISTRY.items() if fnmatch.fnmatch(n, pattern)]
    if torchscript:
        found = [m for m in found if _runs_scripted(m)]
    return sorted(found, key=lambda m: (m.order, m.name))


def _runs_scripted(info: MethodInfo) -> bool:
    """No layer (no forward hook can be put inside TorchScript) and no guided or deconvnet
    rule (no activation call is seen)."""
    return info.scripted and not info.needs_layer and set(info.input_rules) <= {"plain"}


def scripted_methods() -> list[str]:
    """The registered methods that work on a TorchScript model: no layer (no forward hook can
    be put inside TorchScript) and no guided or deconvnet rule (no activation call is seen);
    a wrapping method (SmoothGrad) last, with the bases it can wrap there."""
    plain = list_methods(torchscript=True)
    direct = [m.name for m in plain if not m.wraps_method]
    wrapping = [
        f"{m.name} (base {_or_list([b for b in m.needs.base_methods if b in direct])})"
        for m in plain
        if m.wraps_method
    ]
    return direct + wrapping


def _or_list(names: list[str]) -> str:
    """'a', 'a or b', 'a, b or c'."""
    return " or ".join(filter(None, [", ".join(names[:-1]), *names[-1:]]))


def check_params(info: MethodInfo, params: Mapping[str, Any]) -> None:
    """A ParamError naming the valid parameters when `params` has a name `info`'s method does
    not take (checked before any pass runs, so no method is skipped for a misspelling). A
    wrapping method (SmoothGrad) takes its base method's parameters too."""
    valid = list(info.parameters)
    if info.wraps_method:
        base = params.get("base", _default(info, "base"))
        if isinstance(base, str) and base in info.needs.base_methods and base in _REGISTRY:
            valid += [p for p in _REGISTRY[base].parameters if p not in valid]
    wrong = [name for name in params if name not in valid]
    if not wrong:
        return
    said = ", ".join(repr(name) for name in wrong)
    message = f"{info.name} has no parameter{'s' if len(wrong) > 1 else ''} {said}"
    near = closest(wrong[0], valid, n=3)
    if near:
        message += f" (did you mean {' or '.join(near)}?)"
    if "layer" in wrong:
        message += "; the layer is chosen by layer= (--layer), not as a parameter"
    if valid:
        message += f"; its parameters are: {', '.join(valid)}"
    else:
        message += "; it takes no parameters"
    raise ParamError(message)


def _default(info: MethodInfo, name: str) -> Any:
    """The default value of `compute`'s parameter `name` (None if it has none)."""
    parameter = inspect.signature(info.compute).parameters.get(name)
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return None
    return parameter.default
