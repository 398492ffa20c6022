"""One relevance pass: the canonized copy's forward with the rules on, and one backward.

`relevance(...)` hooks every layer of the copy that its composite gives a rule (a forward hook,
through `forwards.guarded_forward`, that wraps the layer's output in `RuledLayer`), runs the
forward under `functional.RelevanceMode`, and takes one `torch.autograd.grad` from the
explained scores to the input: what flows backward is relevance, so the input "gradient" is the
relevance map R (N, C, H, W). The output relevance is the explained score itself (the target
logit at the target class, zero elsewhere; or the unit's activations), so Σ R ≈ score when the
rules conserve.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ...forwards import Hook, guarded_forward, output_hook
from ...layers import resolve_layer
from ...targets import UnitTarget, select_logits
from .canonizers import canonized_copy
from .composites import Composite
from .functional import RelevanceMode
from .rules import IN_RULE, Rule


class RuledLayer(torch.autograd.Function):
    """The layer's output unchanged forward; backward, the rule's relevance of its input."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, out: torch.Tensor, module: nn.Module, rule: Rule
    ) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.module, ctx.rule = module, rule
        return out.clone()

    @staticmethod
    def backward(ctx: Any, relevance: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            found = ctx.rule.relevance(ctx.module, x, relevance)
        return found, None, None, None


def rule_hook(rule: Rule) -> Callable[..., Any]:
    """A forward hook routing the layer's backward through `rule` (single-tensor layers)."""

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        if (
            not args
            or not isinstance(args[0], torch.Tensor)
            or not isinstance(output, torch.Tensor)
        ):
            return None
        if not args[0].requires_grad or getattr(IN_RULE, "active", False):
            return None  # nothing before it is explained, or a rule running the layer
        return RuledLayer.apply(args[0], output, module, rule)

    return hook


def relevance(
    model: nn.Module,
    inputs: torch.Tensor,
    composite: Composite,
    *,
    targets: torch.Tensor,
    unit: UnitTarget | None = None,
    output_key: str | int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input relevance (N, C, H, W), the explained scores (N,)) under `composite`, on a
    canonized copy of `model` (never on the model itself)."""
    twin = canonized_copy(model, inputs)
    assigned = composite.assign(twin)
    hooks: list[Hook] = [(module, rule_hook(rule)) for module, rule in assigned.values()]
    store: dict[str, torch.Tensor] = {}
    if unit is not None:
        hooks.append((resolve_layer(twin, unit.layer), output_hook(store, "unit")))
    names = {module: name for name, module in twin.named_modules()}
    with guarded_forward(twin, hooks=hooks, grad=True, like=inputs):
        x = inputs.detach().clone().requires_grad_(True)
        with RelevanceMode(names):
            output = twin(x)
        if unit is None:
            logits = select_logits(output, output_key)
            start = logits
            seed = torch.zeros_like(logits)
            rows = torch.arange(len(targets), device=logits.device)
            seed[rows, targets] = logits.detach()[rows, targets]
            scores = seed[rows, targets]
        else:
            start = store["unit"]
            with torch.enable_grad():
                leaf = start.detach().requires_grad_(True)
                unit_scores = unit.scores(leaf)
                (slope,) = torch.autograd.grad(unit_scores.sum(), leaf)
            seed = start.detach() * slope
            scores = unit_scores.detach()
        (found,) = torch.autograd.grad(start, x, seed, allow_unused=True)
    result = torch.zeros_like(x) if found is None else found
    return result.contiguous(), scores
