"""ONE recorded forward: activations at chosen layers and switchable backward rules.

`record(...)` runs the model once under `model_state_guard` (eval mode, restored after), with
forward hooks on the requested layers and, when a guided or deconvnet map is wanted, the
`RuleMode` that routes every activation through `RuledActivation`, inside
`forwards.guarded_forward` (hooks live only for that forward and are removed in `finally`).
What it returns, a `Recording`, holds the graph; every
gradient is taken from it with `torch.autograd.grad` (never `.backward()`, so no parameter's
`.grad` is touched), once per rule and once for all layers together, and cached.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import Hint, LayerError, MethodError, ModelError
from .forwards import (
    channels_last_pays,
    guarded_forward,
    layout_error,
    no_autocast,
    output_hook,
)
from .layers import resolve_layer
from .model import compute_model, is_scripted
from .rules import RULES, RuleMode, RuleState
from .targets import TargetSpec, UnitTarget, resolve_targets, select_logits, target_scores

log = logging.getLogger(__name__)


@dataclass
class Recording:
    """A recorded forward and the gradients taken from it (lazily, each at most once)."""

    inputs: torch.Tensor  # (N, C, H, W) leaf that requires grad
    logits: torch.Tensor  # (N, classes)
    activations: dict[str, torch.Tensor]  # layer -> output of its last call
    targets: torch.Tensor  # (N,) class indices (each image's top-1 for a unit target)
    scores: torch.Tensor  # (N,) target logits, or the unit's activations
    state: RuleState | None
    model: nn.Module
    unit: UnitTarget | None = None
    layers: tuple[str, ...] = ()
    output_key: str | int | None = None
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None  # [0, 1] picture -> input
    _layer_grads: dict[str, torch.Tensor] = field(default_factory=dict)
    _input_grads: dict[str, torch.Tensor] = field(default_factory=dict)
    _released: bool = False  # the graph was freed by the last planned backward pass

    @property
    def probabilities(self) -> torch.Tensor:
        """Softmax probability of each image's target class (N,)."""
        probs = self.logits.detach().float().softmax(dim=1)
        return probs.gather(1, self.targets[:, None]).squeeze(1)

    def rerecord(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        rules: bool | None = None,
    ) -> Recording:
        """A new recorded forward on other inputs (noisy copies, interpolation steps, masked
        images) with the same layers, rules and target: `targets` (one class per new row) for
        class targets; a unit target is kept as it is. Multi-pass methods build on this.
        `rules` overrides whether the backward rules are recorded (default: as this one)."""
        if self.unit is None and targets is None:
            raise MethodError("rerecord needs one target class per new input row")
        return record(
            self.model,
            inputs,
            self.layers,
            rules=self.state is not None if rules is None else rules,
            target=self.unit if self.unit is not None else targets,
            output_key=self.output_key,
            normalize=self.normalize,
        )

    def prepare(
        self, input_rules: Sequence[str] = (), layers: Sequence[str] = (), *, last: bool = False
    ) -> None:
        """Compute what a set of methods needs in as few backward passes as possible: the plain
        input gradient and all layer gradients share one pass; other rules one pass each.

        `last=True` says no other gradient will be asked of this recording: its final pass
        then frees the graph as it goes (`retain_graph=False`), as a plain backward does,
        instead of holding every saved activation until the recording is dropped (lower peak
        memory, and a heap that glibc does not trim and re-fault on the next call)."""
        layers = [name for name in layers if name not in self._layer_grads]
        rules = [r for r in dict.fromkeys(input_rules) if r not in self._input_grads]
        passes: list[tuple[str, list[str], bool]] = []
        if layers and "plain" in rules:
            passes.append(("plain", layers, True))
            rules.remove("plain")
        elif layers:
            passes.append(("plain", layers, False))
        passes += [(rule, [], True) for rule in rules]
        for i, (rule, pass_layers, with_input) in enumerate(passes):
            retain = not (last and i == len(passes) - 1)
            self._backward(rule, pass_layers, with_input=with_input, retain=retain)

    def layer_gradient(self, layer: str) -> torch.Tensor:
        """d(score)/d(activation) at `layer` (plain rule)."""
        if layer not in self._layer_grads:
            self.prepare(layers=[layer])
        return self._layer_grads[layer]

    def input_gradient(self, rule: str = "plain") -> torch.Tensor:
        """The gradient of the score at the input under `rule` (plain, guided, deconvnet)."""
        if rule not in self._input_grads:
            self.prepare(input_rules=[rule])
        return self._input_grads[rule]

    def _backward(
        self, rule: str, layers: list[str], with_input: bool, retain: bool = True
    ) -> None:
        if self._released:  # a gradient nobody planned for: record the forward again
            log.debug("recording the forward again for the %s rule (graph already freed)", rule)
            fresh = self.rerecord(self.inputs.detach(), self.targets, rules=self.state is not None)
            fresh._backward(rule, layers, with_input, retain=False)
            self._input_grads.update(fresh._input_grads)
            self._layer_grads.update(fresh._layer_grads)
            return
        if rule not in RULES:
            raise MethodError(f"unknown backward rule {rule!r}; one of {', '.join(RULES)}")
        if rule != "plain":
            if self.state is None:
                raise MethodError(f"rule {rule!r} needs record(..., rules=True)")
            if self.state.calls == 0:
                raise MethodError(
                    f"the {rule} rule found no ReLU-like activation to act on in this model "
                    "(TorchScript and compiled models run outside Python's view), so it would "
                    "equal the plain gradient; use 'gradient' for this model",
                    hint=Hint("methods", "torchscript") if is_scripted(self.model) else None,
                )
        wrt = ([self.inputs] if with_input else []) + [self.activations[n] for n in layers]
        if self.state is not None:
            self.state.rule = rule
        with torch.inference_mode(False), torch.enable_grad(), no_autocast(self.inputs):
            found = torch.autograd.grad(  # None where unused (the stubs say Tensor)
                self.scores.sum(), wrt, retain_graph=retain, allow_unused=True
            )
        self._released = not retain
        if self.state is not None:
            self.state.rule = "plain"
        grads = [torch.zeros_like(t) if g is None else g for t, g in zip(wrt, found, strict=True)]
        if with_input:  # the map in the standard layout, whatever format the forward ran in
            grads[0] = grads[0].contiguous()
        if with_input:
            self._input_grads[rule] = grads.pop(0)
        for name, g in zip(layers, grads, strict=True):
            if not g.any():
                log.warning("the gradient at layer %s is zero for every image", name)
            self._layer_grads[name] = g


def _check_hookable(model: nn.Module, modules: dict[str, nn.Module]) -> None:
    """A MethodError naming what works when a layer to hook is TorchScript."""
    scripted = [name for name, module in modules.items() if is_scripted(module)]
    if scripted:
        what = "this TorchScript model" if is_scripted(model) else "TorchScript layer(s)"
        raise MethodError(
            f"cannot record {what} {', '.join(scripted)}: TorchScript runs outside Python, so "
            "layer methods (the CAM family, guided Grad-CAM) and unit targets cannot see its "
            "activations; explain the original (non-scripted) nn.Module",
            hint=Hint("methods", "torchscript"),
        )


def check_finite_logits(logits: torch.Tensor) -> None:
    """A ModelError when the model's output has NaN or infinite values: no map is drawn of it."""
    bad = ~torch.isfinite(logits.detach()).all(dim=1)
    if bad.any():
        rows = bad.nonzero().flatten().tolist()
        raise ModelError(
            f"the model's output has NaN or infinite values for image(s) {rows[:10]} of the "
            f"batch, so no explanation of it would mean anything; check the model's weights "
            "(NaN after training, overflow in float16) and the input's preprocessing"
        )


def _as_model_input(inputs: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """A detached copy of `inputs` in the floating dtype of the model's weights (images arrive
    as float32; a float64 or float16 model gets its own dtype), never the caller's tensor."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    x = inputs.detach()
    if dtype is not None and x.is_floating_point() and x.dtype != dtype:
        return x.to(dtype)
    return x.clone()


def _forward(
    model: nn.Module,
    x: torch.Tensor,
    state: RuleState | None,
    store: dict[str, torch.Tensor],
    calls: dict[str, int],
) -> object:
    """`model(x)` under the rules (if any), in channels_last memory format where that pays; a
    model whose code cannot take it (e.g. `.view` on an activation) runs again as it is."""
    if channels_last_pays(x):
        try:
            return _call(model, x.contiguous(memory_format=torch.channels_last), state)
        except RuntimeError as error:
            if not layout_error(error):
                raise  # the model's own failure, not the memory layout: no second run
            log.info("channels_last forward failed (%s); running it contiguous", error)
            store.clear()
            calls.clear()
            if state is not None:
                state.calls, state.kinds = 0, set()
    return _call(model, x, state)


def _call(model: nn.Module, x: torch.Tensor, state: RuleState | None) -> object:
    if state is None:
        return model(x)
    with RuleMode(state):
        return model(x)


def record(
    model: nn.Module,
    inputs: torch.Tensor,
    layers: Sequence[str] = (),
    *,
    rules: bool = False,
    target: TargetSpec = None,
    categories: Sequence[str] | Callable[[int], Sequence[str] | None] | None = None,
    output_key: str | int | None = None,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Recording:
    """Run `model` once on `inputs`, recording the activations of `layers`.

    `rules=True` routes activations through the switchable backward rules (needed for guided
    backprop and deconvnet; the plain gradient is exact either way). Works inside
    `torch.no_grad()` / `torch.inference_mode()` and on a model in train mode. `normalize`
    (the model's [0, 1] picture -> input transform) is kept for methods that need a black
    image in input space.
    """
    model = compute_model(model)
    unit = target if isinstance(target, UnitTarget) else None
    wanted = [*layers, unit.layer] if unit is not None else list(layers)
    modules = {name: resolve_layer(model, name) for name in dict.fromkeys(wanted)}
    _check_hookable(model, modules)
    store: dict[str, torch.Tensor] = {}
    calls: dict[str, int] = {}
    state = RuleState() if rules else None
    hooks = [(module, output_hook(store, name, calls=calls)) for name, module in modules.items()]
    with guarded_forward(model, hooks=hooks, grad=True, like=inputs):
        x = _as_model_input(inputs, model).requires_grad_(True)
        output = _forward(model, x, state, store, calls)
        logits = select_logits(output, output_key)
        check_finite_logits(logits)
        if callable(categories):
            categories = categories(logits.shape[1])
        if unit is None:
            targets = resolve_targets(target, logits, categories)
            scores = target_scores(logits, targets)
        else:
            targets = resolve_targets(None, logits, categories)
            if unit.layer not in store:
                raise LayerError(f"the unit target's layer {unit.layer} did not run")
            scores = unit.scores(store[unit.layer])
    missing = [name for name in modules if name not in store]
    if missing:
        raise LayerError(
            f"layer(s) {', '.join(missing)} did not run (or returned no tensor) in the forward "
            "pass; choose another layer",
            hint=Hint("layers"),
        )
    for name, n in calls.items():
        if n > 1:
            log.info("layer %s ran %d times in one forward; its last call is used", name, n)
    return Recording(
        x,
        logits,
        store,
        targets,
        scores,
        state,
        model,
        unit=unit,
        layers=tuple(layers),
        output_key=output_key,
        normalize=normalize,
    )
