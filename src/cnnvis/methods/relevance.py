"""LRP: layer-wise relevance propagation under a composite of rules, on a canonized copy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..capture import Recording
from ..errors import MethodError
from ..model import compute_model
from ..targets import ClassTarget, describe, target_layers
from .facts import Cost, MethodInfo
from .lrp import Composite, named_composite, relevance
from .lrp.composites import parse_match
from .lrp.rules import Rule, make_rule
from .registry import register


def lrp(
    rec: Recording,
    layer: str | None = None,
    *,
    composite: str | Composite = "EpsilonPlusFlat",
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    rules: Mapping[Any, str | Rule] | None = None,
    low: float | torch.Tensor | None = None,
    high: float | torch.Tensor | None = None,
    sweep: Sequence[str] = (),
) -> tuple[torch.Tensor, dict[str, Any]]:
    """R_in = x ⊙ W′ᵀ(R_out / z′) layer by layer, from R = the target's logit at the output
    (Bach et al. 2015; Montavon et al. 2019), with the rules of `composite` (a name from
    `lrp.COMPOSITES`, default EpsilonPlusFlat, or a `Composite`); `rules` maps layer types,
    class names or name patterns to rules that win over the composite's (e.g.
    {"Linear": "epsilon", "features.0": "z-box"}). `epsilon`: ε of the dense layers; `gamma`:
    γ of the γ rule; `low`, `high`: the input's bounds for z-box (default: the model's
    normalized black and white images). `sweep`: layer names whose relevance sums are reported
    too, from the same backward pass (`layer_relevance_sums`: per-layer conservation). Runs on
    a copy of the model with its BatchNorms merged (the model is never changed). Returns the
    map and, per image, the explained score and the map's sum (equal when the rules conserve
    relevance).
    """
    x = rec.inputs.detach()
    low, high = _bounds(rec, low, high)
    chosen = _composite(composite, epsilon, gamma, low, high)
    if rules:
        made = {
            parse_match(k): make_rule(v, epsilon=epsilon, gamma=gamma, low=low, high=high)
            for k, v in rules.items()
        }
        chosen = chosen.with_rules(made)
    by_class = isinstance(rec.target, ClassTarget) and rec.target.score == "logit"
    targets = rec.targets.to(x.device) if by_class else None
    if rec.unit is None and not by_class and target_layers(rec.target):
        raise MethodError(
            f"lrp explains a class, a unit or a target computed from the model's output; "
            f"{describe(rec.target)} reads layers inside the network"
        )
    found = relevance(
        compute_model(rec.model),
        x,
        chosen,
        targets=targets,
        unit=rec.unit,
        output_key=rec.output_key,
        target=rec.target,
        layers=_layer_names(sweep),
    )
    info: dict[str, Any] = {
        "composite": chosen.name,
        "explained_score": found.scores.tolist(),
        "relevance_sum": found.input.flatten(1).sum(1).tolist(),
    }
    if found.layers:
        info["layer_relevance_sums"] = found.sums()
    return found.input, info


def _layer_names(sweep: object) -> list[str]:
    names = [sweep] if isinstance(sweep, str) else sweep
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise MethodError(f"lrp: sweep must be layer names, got {sweep!r}")
    return list(names)


def _composite(
    composite: str | Composite,
    epsilon: float,
    gamma: float,
    low: float | torch.Tensor | None,
    high: float | torch.Tensor | None,
) -> Composite:
    if isinstance(composite, Composite):
        return composite
    if not isinstance(composite, str):
        raise MethodError(f"lrp: composite must be a name or a Composite, got {composite!r}")
    return named_composite(composite, epsilon=epsilon, gamma=gamma, low=low, high=high)


def _bounds(
    rec: Recording, low: float | torch.Tensor | None, high: float | torch.Tensor | None
) -> tuple[float | torch.Tensor | None, float | torch.Tensor | None]:
    """z-box bounds: as given, else the model's normalized black and white images (per
    channel), when the recording knows the model's normalization of RGB images."""
    if (low is None or high is None) and rec.normalize is not None and rec.inputs.shape[1] == 3:
        like = rec.inputs.detach()[:1]
        low = rec.normalize(torch.zeros_like(like)) if low is None else low
        high = rec.normalize(torch.ones_like(like)) if high is None else high
    return low, high


register(
    MethodInfo(
        name="lrp",
        order=17,
        kind="pixel",
        summary="Layer-wise relevance propagation: the logit redistributed layer by layer by "
        "LRP rules (composite EpsilonPlusFlat by default).",
        formula="R_in = x ⊙ W′ᵀ(R_out / z′), R_out = y_c at the output",
        paper="Bach et al. 2015, doi:10.1371/journal.pone.0130140; Montavon et al. 2019",
        cost=Cost(
            "2 forwards + 1 backward (on a canonized copy, made once)", forwards=2, backwards=1
        ),
        compute=lrp,
        scripted=False,
        sign="signed",  # relevance for (red) and against (blue) the class
    )
)
