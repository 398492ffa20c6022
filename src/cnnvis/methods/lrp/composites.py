"""Composites: which LRP rule each layer of a model gets, by layer type or name pattern.

The named composites are Zennit's (Anders et al. 2021), with the same assignment, so their maps
can be checked against it: the first linear layer in the model's module order is special,
convolutions get z⁺ or α2β1 or γ, dense layers ε.

| composite              | first layer        | convolutions | dense layers |
|------------------------|--------------------|--------------|--------------|
| Epsilon                | ε                  | ε            | ε            |
| EpsilonPlus            | (z⁺)               | z⁺           | ε            |
| EpsilonPlusFlat        | flat (conv or dense) | z⁺         | ε            |
| EpsilonGammaBox        | z-box (first conv) | γ            | ε            |
| EpsilonAlpha2Beta1     | (α2β1)             | α2β1         | ε            |
| EpsilonAlpha2Beta1Flat | flat (conv or dense) | α2β1       | ε            |

Activations, batch normalization, pooling, residual sums and gates are handled where they are
called (`functional.RelevanceMode`), whatever the composite. User rules come first: a mapping
from a layer type (`nn.Conv2d`, or its class name "Conv2d") or a pattern of dotted layer names
("features.0", "layer4.*") to a rule (a name from `rules.RULE_NAMES` or a `Rule`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ...errors import MethodError
from .rules import (
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    Pass,
    Rule,
    ZBox,
    ZPlus,
)

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
DENSE = (nn.Linear,)
LINEAR = CONVOLUTIONS + DENSE
NORMALIZATIONS = (nn.modules.batchnorm._BatchNorm,)  # merged or passed (see canonizers)

Match = type | tuple[type, ...] | str
"""A layer type (or types), or a glob pattern of dotted layer names."""

COMPOSITES = (
    "Epsilon",
    "EpsilonPlus",
    "EpsilonPlusFlat",
    "EpsilonGammaBox",
    "EpsilonAlpha2Beta1",
    "EpsilonAlpha2Beta1Flat",
)


@dataclass(frozen=True)
class Composite:
    """Rules by layer: `first` applies to the first layer (in module order) that matches one of
    its entries, `layers` to every other layer, `overrides` (the user's rules) before both;
    within each, the first matching entry wins."""

    name: str
    layers: tuple[tuple[Match, Rule], ...]
    first: tuple[tuple[Match, Rule], ...] = ()
    overrides: tuple[tuple[Match, Rule], ...] = ()

    def with_rules(self, rules: Mapping[Match, Rule]) -> Composite:
        """This composite with `rules` in front (they win over its own, first layer too)."""
        extra = self.overrides + tuple(rules.items())
        return Composite(f"{self.name}+rules", self.layers, self.first, extra)

    def assign(self, model: nn.Module) -> dict[str, tuple[nn.Module, Rule]]:
        """{layer name: (module, rule)} for every module of `model` a rule applies to; a
        MethodError names a layer with weights that no rule covers."""
        found: dict[str, tuple[nn.Module, Rule]] = {}
        first_done = not self.first
        for name, module in model.named_modules():
            first = None if first_done else _lookup(self.first, name, module)
            first_done = first_done or first is not None
            rule = _lookup(self.overrides, name, module) or first
            rule = rule or _lookup(self.layers, name, module)
            if rule is not None:
                _check_fits(name, module, rule)
                found[name] = (module, rule)
            elif _has_weights(module) and not isinstance(module, NORMALIZATIONS):
                raise _no_rule(self, name, module)
        return found


def _lookup(entries: tuple[tuple[Match, Rule], ...], name: str, module: nn.Module) -> Rule | None:
    for match, rule in entries:
        if isinstance(match, str):
            if fnmatch.fnmatchcase(name, match) or type(module).__name__ == match:
                return rule
        elif isinstance(module, match):
            return rule
    return None


def _has_weights(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def _no_rule(composite: Composite, name: str, module: nn.Module) -> MethodError:
    kind = type(module).__name__
    layer = f"layer {name}" if name else "the model itself"
    rule = "epsilon" if isinstance(module, LINEAR) else "pass"
    return MethodError(
        f"lrp: {layer} ({kind}) has weights but no rule in composite {composite.name}; give "
        f"it one, e.g. rules={{'{kind}': '{rule}'}} for every {kind}"
        + (f" or rules={{'{name}': '{rule}'}} for this layer" if name else "")
        + " (rules: epsilon, gamma, alpha2-beta1, alpha1-beta0, z-plus, z-box, flat, w-square "
        "and pass; all but pass for convolutions and linear layers only)"
    )


def _check_fits(name: str, module: nn.Module, rule: Rule) -> None:
    """A MethodError when a weight rule is given to a layer that is not linear."""
    if isinstance(rule, Pass) or (
        isinstance(module, LINEAR) and not getattr(module, "transposed", False)
    ):
        return
    raise MethodError(
        f"lrp: rule {rule.name} applies to convolutions and linear layers, and layer "
        f"{name or '(the model itself)'} is a {type(module).__name__}; give it 'pass' or a rule "
        "only for linear layers"
    )


def named_composite(
    name: str,
    *,
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    low: float | torch.Tensor | None = None,
    high: float | torch.Tensor | None = None,
) -> Composite:
    """The composite called `name` (see `COMPOSITES`), with ε = `epsilon` on dense layers, γ =
    `gamma`, and z-box bounds `low`, `high` (EpsilonGammaBox)."""
    dense = (DENSE, Epsilon(epsilon))
    if name == "Epsilon":
        return Composite(name, ((LINEAR, Epsilon(epsilon)),))
    if name == "EpsilonPlus":
        return Composite(name, ((CONVOLUTIONS, ZPlus()), dense))
    if name == "EpsilonPlusFlat":
        return Composite(name, ((CONVOLUTIONS, ZPlus()), dense), ((LINEAR, Flat()),))
    if name == "EpsilonAlpha2Beta1":
        return Composite(name, ((CONVOLUTIONS, AlphaBeta(2.0, 1.0)), dense))
    if name == "EpsilonAlpha2Beta1Flat":
        flat: tuple[tuple[Match, Rule], ...] = ((LINEAR, Flat()),)
        return Composite(name, ((CONVOLUTIONS, AlphaBeta(2.0, 1.0)), dense), flat)
    if name == "EpsilonGammaBox":
        if low is None or high is None:
            raise MethodError(
                "EpsilonGammaBox needs the input's bounds low and high for its z-box rule"
            )
        first = ((CONVOLUTIONS, ZBox(low, high)),)
        return Composite(name, ((CONVOLUTIONS, Gamma(gamma)), dense), first)
    raise MethodError(f"unknown LRP composite {name!r}; one of {', '.join(COMPOSITES)}")


def parse_match(key: object) -> Match:
    """A user rule's key: a layer type, a tuple of them, or a name pattern / class name."""
    if isinstance(key, str | type):
        return key
    if isinstance(key, tuple) and all(isinstance(k, type) for k in key):
        return key
    raise MethodError(
        f"lrp rules: a key must be a layer type, a class name or a layer-name pattern, got {key!r}"
    )


__all__ = ["COMPOSITES", "Composite", "Pass", "named_composite", "parse_match"]
