"""ONE recorded forward: activations at chosen layers and switchable backward rules.

`record(...)` runs the model once under `model_state_guard` (eval mode, restored after), with
forward hooks on the requested layers and, when a guided or deconvnet map is wanted, the
`RuleMode` that routes every activation through `RuledActivation`. Hooks live only for that
forward and are removed in `finally`. What it returns, a `Recording`, holds the graph; every
gradient is taken from it with `torch.autograd.grad` (never `.backward()`, so no parameter's
`.grad` is touched), once per rule and once for all layers together, and cached.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import LayerError, MethodError, ModelError
from .guard import model_state_guard
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

    def score(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        probability: bool = False,
    ) -> torch.Tensor:
        """The explained score (M,) on other inputs, from one forward without gradients (under
        `model_state_guard` and `torch.inference_mode`): the unit's for a unit target, else the
        logit (or softmax `probability`) of `targets`, one class per row. Perturbation methods
        call it on chunks of masked inputs."""
        if self.unit is None and targets is None:
            raise MethodError("score needs one target class per input row")
        store: dict[str, torch.Tensor] = {}
        handles = []
        with model_state_guard(self.model), torch.inference_mode(), no_autocast(inputs):
            try:
                if self.unit is not None:
                    module = resolve_layer(self.model, self.unit.layer)
                    calls: dict[str, int] = {}
                    handles.append(
                        module.register_forward_hook(_capture_hook("unit", store, calls))
                    )
                logits = select_logits(self.model(inputs), self.output_key)
            finally:
                for handle in handles:
                    handle.remove()
            if self.unit is not None:
                scores = self.unit.scores(store["unit"])
            elif probability:
                probs = logits.to(torch.promote_types(logits.dtype, torch.float32)).softmax(1)
                scores = target_scores(probs, targets)
            else:
                scores = target_scores(logits, targets)
        return scores.clone()  # outside inference mode: an ordinary tensor

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
                hint = (
                    f"; on TorchScript, methods that work: {', '.join(scripted_methods())}"
                    if is_scripted(self.model)
                    else ""
                )
                raise MethodError(
                    f"the {rule} rule found no ReLU-like activation to act on in this model "
                    "(TorchScript and compiled models run outside Python's view), so it would "
                    f"equal the plain gradient; use 'gradient' for this model{hint}"
                )
        wrt = ([self.inputs] if with_input else []) + [self.activations[n] for n in layers]
        if self.state is not None:
            self.state.rule = rule
        with torch.inference_mode(False), torch.enable_grad(), no_autocast(self.inputs):
            grads = torch.autograd.grad(
                self.scores.sum(), wrt, retain_graph=retain, allow_unused=True
            )
        self._released = not retain
        if self.state is not None:
            self.state.rule = "plain"
        grads = [torch.zeros_like(t) if g is None else g for t, g in zip(wrt, grads, strict=True)]
        if with_input:  # the map in the standard layout, whatever format the forward ran in
            grads[0] = grads[0].contiguous()
        if with_input:
            self._input_grads[rule] = grads.pop(0)
        for name, g in zip(layers, grads, strict=True):
            if not g.any():
                log.warning("the gradient at layer %s is zero for every image", name)
            self._layer_grads[name] = g


def scripted_methods() -> list[str]:
    """The registered methods that work on a TorchScript model: no layer (no forward hook can
    be put inside TorchScript) and no guided or deconvnet rule (no activation call is seen)."""
    from .methods import list_methods  # the methods import this module

    return [
        m.name
        for m in list_methods()
        if not m.needs_layer and set(m.input_rules) <= {"plain"} and "base method" not in m.needs
    ] + ["smoothgrad (base gradient, gradient-x-input or integrated-gradients)"]


def _check_hookable(model: nn.Module, modules: dict[str, nn.Module]) -> None:
    """A MethodError naming what works when a layer to hook is TorchScript."""
    scripted = [name for name, module in modules.items() if is_scripted(module)]
    if scripted:
        what = "this TorchScript model" if is_scripted(model) else "TorchScript layer(s)"
        raise MethodError(
            f"cannot record {what} {', '.join(scripted)}: TorchScript runs outside Python, so "
            "layer methods (the CAM family, guided Grad-CAM) and unit targets cannot see its "
            f"activations; methods that work: {', '.join(scripted_methods())}; or explain the "
            "original (non-scripted) nn.Module"
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


def _first_tensor(output):
    if isinstance(output, torch.Tensor):
        return output, lambda t: t
    if isinstance(output, tuple | list):
        for i, item in enumerate(output):
            if isinstance(item, torch.Tensor):
                return item, lambda t, i=i: type(output)(
                    [t if j == i else o for j, o in enumerate(output)]
                )
    return None, None


def first_tensor(output):
    """(the first tensor of a module's output (a tensor, tuple or list), a function that puts a
    replacement for it back into an output of the same structure); (None, None) without one."""
    return _first_tensor(output)


def no_autocast(inputs: torch.Tensor) -> torch.autocast:
    """Autocast off while recording: maps are computed in the model's own (float32) precision
    even when the caller runs inside `torch.autocast`."""
    device = inputs.device.type if inputs.device.type in ("cpu", "cuda", "mps", "xpu") else "cpu"
    return torch.autocast(device, enabled=False)


def _as_model_input(inputs: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """A detached copy of `inputs` in the floating dtype of the model's weights (images arrive
    as float32; a float64 or float16 model gets its own dtype), never the caller's tensor."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    x = inputs.detach()
    if dtype is not None and x.is_floating_point() and x.dtype != dtype:
        return x.to(dtype)
    return x.clone()


CHANNELS_LAST_MIN_ELEMENTS = 2**20  # input elements per forward below which it is not used


def channels_last_pays(x: torch.Tensor) -> bool:
    """Whether the model should see `x` in channels_last memory format: on CPU in float32, for
    4-D batches of at least `CHANNELS_LAST_MIN_ELEMENTS` elements (oneDNN's own layout; a
    ResNet-50 forward + input gradient of 8 224x224 images took 0.45 s instead of 0.57 s, two
    threads). Values equal up to float32 rounding. Not measured on GPU, so not used there."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() == 4
        and x.numel() >= CHANNELS_LAST_MIN_ELEMENTS
    )


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
            if not any(word in str(error) for word in ("stride", "contiguous")):
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


def _capture_hook(name: str, store: dict[str, torch.Tensor], calls: dict[str, int]):
    """Store the module's output and hand downstream a clone, so that later in-place ops
    (ReLU(inplace=True), `out += identity`) cannot overwrite what was stored."""

    def hook(module, args, output):
        tensor, rebuild = _first_tensor(output)
        if tensor is None:
            return None
        calls[name] = calls.get(name, 0) + 1
        store[name] = tensor
        return rebuild(tensor.clone())

    return hook


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
    handles = []
    with (
        torch.inference_mode(False),
        torch.enable_grad(),
        no_autocast(inputs),
        model_state_guard(model),
    ):
        x = _as_model_input(inputs, model).requires_grad_(True)
        try:
            for name, module in modules.items():
                handles.append(module.register_forward_hook(_capture_hook(name, store, calls)))
            output = _forward(model, x, state, store, calls)
        finally:
            for handle in handles:
                handle.remove()
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
            "pass; choose a layer from cnnvis.list_layers(model)"
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
