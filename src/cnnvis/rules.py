"""Backward rules for activations: plain gradient, guided backprop, deconvnet.

One recorded forward serves every rule: while it runs, a `TorchFunctionMode` sees every call to
a ReLU-like activation — as a module (`nn.ReLU`, `nn.ReLU6`) or a function (`F.relu` in
torchvision's DenseNet and Inception), in place or not, a module reused several times (ResNet's
blocks) — and routes it through `RuledActivation`, whose backward reads the rule chosen *at
backward time*:

- plain:     dx = f'(x) * g                      (the ordinary gradient, bit for bit)
- guided:    dx = max(f'(x) * g, 0)              (Springenberg et al. 2015; for ReLU this is
                                                  1[x > 0] * max(g, 0))
- deconvnet: dx = max(g, 0)                      (Zeiler & Fergus 2014: the forward input is
                                                  ignored)

ReLU, ReLU6 and Hardtanh use their exact masks. SiLU, GELU, Hardswish, LeakyReLU, ELU and Mish
have no "active range"; for them guided backprop clamps the local gradient product at zero
(the rule Captum applies to any module it hooks) and deconvnet passes max(g, 0). Gates such as
the sigmoid / hardsigmoid of squeeze-excitation blocks keep their plain gradient.

In-place calls (`relu_`, `inplace=True`) are computed out of place while recording; their
results are used through the return value, which is how every torchvision and timm model uses
them. The user's modules are never swapped or modified.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

RULES = ("plain", "guided", "deconvnet")


@dataclass
class RuleState:
    """The rule that `RuledActivation.backward` applies; switched between backward passes."""

    rule: str = "plain"
    calls: int = 0  # activation calls routed while recording (0 -> rules cannot apply)
    kinds: set[str] = field(default_factory=set)


# the local gradient product f'(x) * g of an activation, from (g, x, its parameters)
_LocalGradient = Callable[[torch.Tensor, torch.Tensor, dict[str, Any]], torch.Tensor]


def _relu_local(grad: torch.Tensor, x: torch.Tensor, p: dict[str, Any]) -> torch.Tensor:
    """1[x > 0] * g in one fused kernel (the one autograd's own ReLU backward uses)."""
    out: torch.Tensor = torch.ops.aten.threshold_backward(grad, x, 0)  # ops are typed Any
    return out


def _hardtanh_local(grad: torch.Tensor, x: torch.Tensor, p: dict[str, Any]) -> torch.Tensor:
    """1[min < x < max] * g in one fused kernel."""
    out: torch.Tensor = torch.ops.aten.hardtanh_backward(grad, x, p["min_val"], p["max_val"])
    return out


class RuledActivation(torch.autograd.Function):
    """f(x) forward; backward by the rule in `state.rule` (see module docstring)."""

    @staticmethod
    def forward(
        ctx: Any,  # a FunctionCtx carrying the attributes set below
        x: torch.Tensor,
        fn: Callable[..., torch.Tensor],
        params: dict[str, Any],
        local_fn: _LocalGradient | None,
        state: RuleState,
    ) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.fn, ctx.params, ctx.local_fn, ctx.state = fn, params, local_fn, state
        return fn(x, **params)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None, None]:
        (x,) = ctx.saved_tensors
        rule = ctx.state.rule
        if rule == "deconvnet":
            return grad.clamp(min=0), None, None, None, None
        if ctx.local_fn is not None:
            local = ctx.local_fn(grad, x, ctx.params)
        else:
            with torch.enable_grad():
                xd = x.detach().requires_grad_(True)
                (local,) = torch.autograd.grad(ctx.fn(xd, **ctx.params), xd, grad)
        if rule == "guided":
            local = local.clamp_(min=0)  # `local` is a new tensor in every branch above
        return local, None, None, None, None


@dataclass(frozen=True)
class _Spec:
    kind: str
    fn: Callable[..., torch.Tensor]  # out-of-place implementation
    defaults: dict[str, Any]
    local_fn: _LocalGradient | None


def _build_specs() -> dict[Callable[..., Any], _Spec]:
    relu = _Spec("relu", torch.relu, {}, _relu_local)
    relu6 = _Spec("relu6", F.hardtanh, {"min_val": 0.0, "max_val": 6.0}, _hardtanh_local)
    hardtanh = _Spec("hardtanh", F.hardtanh, {"min_val": -1.0, "max_val": 1.0}, _hardtanh_local)
    specs: dict[Callable[..., Any], _Spec] = {
        F.relu: relu,
        torch.relu: relu,
        torch.relu_: relu,
        torch.Tensor.relu: relu,
        torch.Tensor.relu_: relu,
        F.relu6: relu6,
        F.hardtanh: hardtanh,
        F.silu: _Spec("silu", F.silu, {}, None),
        F.gelu: _Spec("gelu", F.gelu, {"approximate": "none"}, None),
        F.hardswish: _Spec("hardswish", F.hardswish, {}, None),
        F.leaky_relu: _Spec("leaky_relu", F.leaky_relu, {"negative_slope": 0.01}, None),
        F.elu: _Spec("elu", F.elu, {"alpha": 1.0}, None),
        F.mish: _Spec("mish", F.mish, {}, None),
    }
    return specs


_SPECS = _build_specs()
_SIGNATURES: dict[Callable[..., Any], inspect.Signature] = {}


def _params(
    func: Callable[..., Any], spec: _Spec, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The activation's parameters (min/max, slope, ...) from a call's arguments."""
    if not spec.defaults:
        return {}
    sig = _SIGNATURES.get(func)
    if sig is None:
        try:
            sig = _SIGNATURES[func] = inspect.signature(func)
        except ValueError:  # a builtin such as F.gelu: (input, *, approximate)
            return {k: kwargs.get(k, v) for k, v in spec.defaults.items()}
    bound = sig.bind(*args, **kwargs).arguments
    return {k: bound.get(k, v) for k, v in spec.defaults.items()}


class RuleMode(TorchFunctionMode):
    """Routes every ReLU-like call made while active through `RuledActivation`."""

    def __init__(self, state: RuleState) -> None:
        super().__init__()
        self.state = state

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Collection[type],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        spec = _SPECS.get(func)
        if spec is None or not args or not isinstance(args[0], torch.Tensor):
            return func(*args, **kwargs)
        x = args[0]
        if not (torch.is_grad_enabled() and x.requires_grad):
            return func(*args, **kwargs)
        params = _params(func, spec, args, kwargs)
        self.state.calls += 1
        self.state.kinds.add(spec.kind)
        return RuledActivation.apply(x, spec.fn, params, spec.local_fn, self.state)
