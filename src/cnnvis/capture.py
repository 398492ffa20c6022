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
from typing import Any

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
from .targets import (
    ClassTarget,
    Context,
    TargetSpec,
    UnitTarget,
    as_target,
    bind,
    checked_scores,
    describe,
    select_logits,
    select_output,
    take,
    target_layers,
)

log = logging.getLogger(__name__)


@dataclass
class Recording:
    """A recorded forward and the gradients taken from it (lazily, each at most once)."""

    inputs: torch.Tensor  # (N, C, H, W) leaf that requires grad
    class_logits: torch.Tensor | None  # (N, classes) when the output is a classifier's
    activations: dict[str, torch.Tensor]  # layer -> output of its last call
    target: Any  # the target bound to this batch (see cnnvis.targets), one row per image
    scores: torch.Tensor  # (N,) the target's score of each image
    state: RuleState | None
    model: nn.Module
    layers: tuple[str, ...] = ()
    output_key: str | int | None = None
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None  # [0, 1] picture -> input
    _layer_grads: dict[str, torch.Tensor] = field(default_factory=dict)
    _input_grads: dict[str, torch.Tensor] = field(default_factory=dict)
    _released: bool = False  # the graph was freed by the last planned backward pass

    @property
    def logits(self) -> torch.Tensor:
        """The classifier's logits (N, classes); a MethodError for other outputs."""
        if self.class_logits is None:
            raise MethodError(
                f"this needs a classifier's (N, classes) logits, and the model's output is not "
                f"one (the target is {describe(self.target)})"
            )
        return self.class_logits

    @property
    def unit(self) -> UnitTarget | None:
        """The unit target, if the target is one."""
        return self.target if isinstance(self.target, UnitTarget) else None

    @property
    def targets(self) -> torch.Tensor:
        """One class index per image (N,): the class target's (each image's top-1 for a unit
        target); a MethodError for other targets, which name no class."""
        if isinstance(self.target, ClassTarget):
            return self.target.indices(self.logits)
        if self.unit is not None and self.class_logits is not None:
            return self.class_logits.detach().argmax(dim=1)
        raise MethodError(
            f"this needs a class target (an index, a name or top1), and the target is "
            f"{describe(self.target)}"
        )

    @property
    def probabilities(self) -> torch.Tensor:
        """Softmax probability of each image's target class (N,) (NaN without a class)."""
        if not isinstance(self.target, ClassTarget) or self.class_logits is None:
            return torch.full((self.inputs.shape[0],), float("nan"))
        probs = self.class_logits.detach().float().softmax(dim=1)
        return probs.gather(1, self.targets[:, None]).squeeze(1)

    def target_rows(self, rows: torch.Tensor) -> Any:
        """The target of the images `rows` (repeats allowed), for extra rows built from them
        (noisy copies, path points, masked images): row i scores like image rows[i]."""
        return take(self.target, rows)

    def rerecord(
        self,
        inputs: torch.Tensor,
        targets: Any = None,
        *,
        rules: bool | None = None,
    ) -> Recording:
        """A new recorded forward on other inputs (noisy copies, interpolation steps, masked
        images) with the same layers, rules and target: `targets` is the target of the new
        rows (`target_rows(rows)`; for class targets also one class index per row). A target
        that is the same for every row (a unit) needs none. Multi-pass methods build on this.
        `rules` overrides whether the backward rules are recorded (default: as this one)."""
        return record(
            self.model,
            inputs,
            self.layers,
            rules=self.state is not None if rules is None else rules,
            target=self._rows_target(targets),
            output_key=self.output_key,
            normalize=self.normalize,
        )

    def _rows_target(self, targets: Any) -> Any:
        if isinstance(targets, torch.Tensor) and not hasattr(targets, "scores"):
            if isinstance(self.target, ClassTarget):  # class indices, one per new row
                return ClassTarget(targets, self.target.score)
            if self.unit is not None:
                return self.unit
            raise MethodError(
                f"rerecord: class indices given, but the target is {describe(self.target)}; "
                "pass rec.target_rows(rows)"
            )
        if targets is None:
            if take(self.target, torch.zeros(1, dtype=torch.long)) is not self.target:
                raise MethodError("rerecord needs one target class per new input row")
            return self.target
        return targets

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
            fresh = self.rerecord(self.inputs.detach(), self.target, rules=self.state is not None)
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
    load_image: Callable[[Any], torch.Tensor] | None = None,
) -> Recording:
    """Run `model` once on `inputs`, recording the activations of `layers`.

    `target`: anything `cnnvis.targets.as_target` takes (None for each image's top-1 class, an
    index, a name, "layer4:17", "mask:15", a target object, a callable, one per image); it is
    bound to this batch and gives `Recording.scores`. `rules=True` routes activations through
    the switchable backward rules (needed for guided backprop and deconvnet; the plain gradient
    is exact either way). Works inside `torch.no_grad()` / `torch.inference_mode()` and on a
    model in train mode. `normalize` (the model's [0, 1] picture -> input transform) is kept
    for methods that need a black image in input space; `load_image` turns a reference image
    (a path, PIL image) into model input for targets that compare with one.
    """
    model = compute_model(model)
    wanted_target = as_target(target)
    wanted = [*layers, *target_layers(wanted_target)]
    modules = {name: resolve_layer(model, name) for name in dict.fromkeys(wanted)}
    _check_hookable(model, modules)
    store: dict[str, torch.Tensor] = {}
    calls: dict[str, int] = {}
    state = RuleState() if rules else None
    hooks = [(module, output_hook(store, name, calls=calls)) for name, module in modules.items()]
    with guarded_forward(model, hooks=hooks, grad=True, like=inputs):
        x = _as_model_input(inputs, model).requires_grad_(True)
        raw = _forward(model, x, state, store, calls)
        output = select_output(raw, output_key)
        logits = _class_logits(raw, output_key, wanted_target)
        if logits is not None:
            check_finite_logits(logits)
    missing = [name for name in modules if name not in store]
    unit = wanted_target if isinstance(wanted_target, UnitTarget) else None
    if unit is not None and unit.layer in missing:
        raise LayerError(f"the unit target's layer {unit.layer} did not run")
    if missing:
        raise LayerError(
            f"layer(s) {', '.join(missing)} did not run (or returned no tensor) in the forward "
            "pass; choose another layer",
            hint=Hint("layers"),
        )
    for name, n in calls.items():
        if n > 1:
            log.info("layer %s ran %d times in one forward; its last call is used", name, n)
    context = Context(
        rows=x.shape[0],
        categories=_names(categories),
        forward=_other_forward(model, output_key, inputs),
        load_image=load_image,
    )
    with torch.inference_mode(False):  # what binding makes (class indices) meets autograd
        bound = bind(wanted_target, output, store, context)
        with torch.enable_grad(), no_autocast(inputs):
            scores = checked_scores(bound, output, store, x.shape[0])
    _check_finite_scores(scores, bound)
    return Recording(
        x,
        logits,
        store,
        bound,
        scores,
        state,
        model,
        layers=tuple(layers),
        output_key=output_key,
        normalize=normalize,
    )


def _class_logits(output: Any, key: str | int | None, target: Any) -> torch.Tensor | None:
    """The (N, classes) logits when the output is a classifier's: required by class targets,
    skipped for targets of other outputs, kept where found for the rest (units, callables)."""
    wanted = getattr(target, "needs_logits", None)
    if wanted is False:
        return None
    try:
        return select_logits(output, key)
    except ModelError:
        if wanted:
            raise
        return None


def _names(
    categories: Sequence[str] | Callable[[int], Sequence[str] | None] | None,
) -> Callable[[int], Sequence[str] | None]:
    if callable(categories):
        return categories
    return lambda classes: categories


def _other_forward(
    model: nn.Module, output_key: str | int | None, like: torch.Tensor
) -> Callable[[torch.Tensor, Sequence[str]], tuple[Any, dict[str, torch.Tensor]]]:
    """`forward(x, layers) -> (output, activations)`: the model on another input (a reference
    image), without gradients, for targets that bind to one."""

    def forward(x: torch.Tensor, names: Sequence[str]) -> tuple[Any, dict[str, torch.Tensor]]:
        store: dict[str, torch.Tensor] = {}
        hooks = [(resolve_layer(model, n), output_hook(store, n)) for n in dict.fromkeys(names)]
        with guarded_forward(model, hooks=hooks, grad=False, like=like):
            out = model(_as_model_input(x.to(like.device), model))
        return select_output(out, output_key), store

    return forward


def _check_finite_scores(scores: torch.Tensor, target: Any) -> None:
    bad = ~torch.isfinite(scores.detach())
    if bad.any():
        rows = bad.nonzero().flatten().tolist()
        raise ModelError(
            f"the target {describe(target)} scores NaN or infinity for image(s) {rows[:10]} of "
            "the batch, so no explanation of it would mean anything; check the model and the "
            "target (a log of a zero probability, a division by zero)"
        )
