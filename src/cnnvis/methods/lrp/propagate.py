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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ...errors import MethodError
from ...forwards import Hook, first_tensor, guarded_forward, output_hook
from ...layers import resolve_layer
from ...targets import UnitTarget, checked_scores, select_logits, select_output
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


@dataclass
class Relevance:
    """One relevance pass: the input's relevance (N, C, H, W), the explained scores (N,), and
    the relevance at the output of each swept layer (shaped like the layer's output)."""

    input: torch.Tensor
    scores: torch.Tensor
    layers: dict[str, torch.Tensor] = field(default_factory=dict)

    def sums(self) -> dict[str, list[float]]:
        """Σ R per image at every swept layer and at the input (per-layer conservation: with
        conserving rules each equals the explained score)."""
        found = {name: r.flatten(1).sum(1).tolist() for name, r in self.layers.items()}
        return {**found, "input": self.input.flatten(1).sum(1).tolist()}


def relevance(
    model: nn.Module,
    inputs: torch.Tensor,
    composite: Composite,
    *,
    targets: torch.Tensor | None,
    unit: UnitTarget | None = None,
    output_key: str | int | None = None,
    layers: Sequence[str] = (),
    target: Any = None,
) -> Relevance:
    """The relevance of the input (and at the output of each of `layers`, from the same one
    backward pass: a relevance sweep) under `composite`, on a canonized copy of `model`
    (never on the model itself). `targets`: class indices (the logit explained); else `unit`,
    else any other bound `target` computed from the output (a mask, labels, a softmax
    probability), whose relevance at the output is output ⊙ ∂score/∂output."""
    twin = canonized_copy(model, inputs)
    assigned = composite.assign(twin)
    hooks: list[Hook] = [(module, rule_hook(rule)) for module, rule in assigned.values()]
    store: dict[str, torch.Tensor] = {}
    for name in dict.fromkeys(layers):
        hooks.append((resolve_layer(twin, name), output_hook(store, name)))
    if unit is not None:
        hooks.append((resolve_layer(twin, unit.layer), output_hook(store, "unit")))
    names = {module: name for name, module in twin.named_modules()}
    with guarded_forward(twin, hooks=hooks, grad=True, like=inputs):
        x = inputs.detach().clone().requires_grad_(True)
        with RelevanceMode(names):
            output = twin(x)
        if targets is None and unit is None:
            start, seed, scores = _seed_any(select_output(output, output_key), target)
        else:
            start, seed, scores = _seed(output, targets, unit, store, output_key)
        swept = [n for n in dict.fromkeys(layers) if n in store]
        wrt = [x, *(store[n] for n in swept)]
        found = torch.autograd.grad(start, wrt, seed, allow_unused=True)
    maps = [torch.zeros_like(t) if g is None else g for t, g in zip(wrt, found, strict=True)]
    by_layer = dict(zip(swept, maps[1:], strict=True))
    return Relevance(maps[0].contiguous(), scores, by_layer)


def _seed_any(output: Any, target: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For a target computed from the output (a tensor, or a dict / list holding one): the
    output tensor, its relevance output ⊙ ∂score/∂output (which sums to the score for a
    score linear in the output), and the scores."""
    tensor, rebuild = _output_tensor(output)
    leaf = tensor.detach().requires_grad_(True)
    scores = checked_scores(target, rebuild(leaf), {}, tensor.shape[0])
    (slope,) = torch.autograd.grad(scores.sum(), leaf)
    return tensor, tensor.detach() * slope, scores.detach()


def _output_tensor(output: Any) -> tuple[torch.Tensor, Callable[[torch.Tensor], Any]]:
    """The one tensor of a model's output, and how to put another in its place."""
    if isinstance(output, torch.Tensor):
        return output, lambda t: t
    if isinstance(output, Mapping):
        keys = [k for k, v in output.items() if isinstance(v, torch.Tensor)]
        if len(keys) == 1 or "out" in keys:
            key = "out" if "out" in keys else keys[0]
            return output[key], lambda t: {**output, key: t}
    tensor, rebuild = first_tensor(output)
    if tensor is None or rebuild is None:
        raise MethodError(
            f"lrp: cannot find the output tensor in a model output of type "
            f"{type(output).__name__}; explain a class, a unit, or a target of one tensor"
        )
    return tensor, rebuild


def _seed(
    output: object,
    targets: torch.Tensor | None,
    unit: UnitTarget | None,
    store: dict[str, torch.Tensor],
    output_key: str | int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(where relevance starts, its relevance there, the explained scores (N,)): the target
    logit at the target class; for a unit target, the unit's share of the layer's activation
    (a ⊙ ∂score/∂a, which sums to the score for sum, max and point reductions)."""
    if unit is None:
        if targets is None:
            raise MethodError("lrp: a class target needs its class indices")
        logits = select_logits(output, output_key)
        seed = torch.zeros_like(logits)
        rows = torch.arange(len(targets), device=logits.device)
        seed[rows, targets] = logits.detach()[rows, targets]
        return logits, seed, seed[rows, targets]
    start = store["unit"]
    leaf = start.detach().requires_grad_(True)
    unit_scores = unit.scores(leaf)
    (slope,) = torch.autograd.grad(unit_scores.sum(), leaf)
    return start, start.detach() * slope, unit_scores.detach()
