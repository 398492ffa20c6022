"""DeepLIFT's rescale rule as a backward rule: every nonlinearity of a paired forward passes
Δy/Δx instead of its derivative.

DeepLIFT runs the model once on a batch [x; x′] (the inputs, then their references, row for
row). While it runs, `RescaleMode` (a `TorchFunctionMode`, the mechanism `rules.RuleMode` uses
for guided backprop) sees every nonlinearity — as a module or a function, in place or not, a
module called twice (ResNet's blocks) — and routes it through an autograd function whose
backward, for the gradient g of the input rows, is (Shrikumar et al. 2017, "rescale"):

- elementwise f (ReLU, ReLU6/Hardtanh, LeakyReLU, ELU, Softplus, Sigmoid, Tanh, SiLU, GELU,
  Hardswish, Hardsigmoid, Mish): g ⊙ (f(x) − f(x′)) / (x − x′), and the plain f′(x) ⊙ g where
  |x − x′| < eps (Captum's rule, eps 1e-10);
- max pooling: the output difference max(y, y′) − y′ (for the input rows) and y − max(y, y′)
  (for the reference rows) sent back to each one's argmax, summed, divided by x − x′ (plain
  gradient where |x − x′| < eps) — Captum's maxpool rule, with overlapping windows summed.

Linear operations (convolutions, linear layers, eval-mode BatchNorm, average pooling, sums,
concatenations) keep their gradient, which is already their Δy/Δx. Both halves get the same
multipliers, so the input gradient times x − x′ is DeepLIFT's attribution and it sums to
f(x) − f(x′) on ReLU networks. The user's modules are never changed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..errors import MethodError

EPS = 1e-10


@dataclass
class RescaleState:
    """What the mode saw, and a flag that lets the rules' own backward computations through."""

    calls: int = 0
    busy: bool = False
    eps: float = EPS


def _halves(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if t.shape[0] % 2:
        raise MethodError(
            f"deeplift: a nonlinearity saw {t.shape[0]} rows, not the input and reference halves "
            "DeepLIFT pairs; the model mixes the rows of its batch (DeepLIFT needs a model whose "
            "layers keep the batch dimension first)"
        )
    n = t.shape[0] // 2
    return t[:n], t[n:]


def _plain(
    fn: Callable[..., torch.Tensor], x: torch.Tensor, params: dict[str, Any], g: torch.Tensor
) -> torch.Tensor:
    """The ordinary input gradient of fn at x for the output gradient g."""
    with torch.enable_grad():
        xd = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(xd, **params), xd, g)
    return grad


class Rescaled(torch.autograd.Function):
    """y = fn(x) forward on [x; x′]; backward by the rescale rule (module docstring)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        fn: Callable[..., torch.Tensor],
        params: dict[str, Any],
        pool: bool,
        state: RescaleState,
    ) -> torch.Tensor:
        y = fn(x, **params)
        ctx.save_for_backward(x, y)
        ctx.fn, ctx.params, ctx.pool, ctx.state = fn, params, pool, state
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, y = ctx.saved_tensors
        state: RescaleState = ctx.state
        state.busy = True
        try:
            x_in, x_ref = _halves(x)
            y_in, y_ref = _halves(y)
            g, _ = _halves(grad)
            delta_in = x_in - x_ref
            plain = _plain(ctx.fn, x_in, ctx.params, g)
            if ctx.pool:
                top = torch.maximum(y_in, y_ref)
                sent = torch.cat([g * (top - y_ref), g * (y_in - top)])
                back_in, back_ref = _halves(_plain(ctx.fn, x, ctx.params, sent))
                rescaled = (back_in + back_ref) / delta_in
            else:
                rescaled = g * (y_in - y_ref) / delta_in
            out = torch.where(delta_in.abs() < state.eps, plain, rescaled)
        finally:
            state.busy = False
        return torch.cat([out, out]), None, None, None, None


def _pool_params(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
    names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    params = dict(zip(names, args[1:], strict=False)) | kwargs
    if params.pop("return_indices", False):
        return None  # (values, indices): left to the plain gradient
    return params


_ELEMENTWISE: dict[Callable[..., Any], Callable[..., torch.Tensor]] = {
    F.relu: F.relu,
    torch.relu: torch.relu,
    torch.relu_: torch.relu,
    torch.Tensor.relu: torch.relu,
    torch.Tensor.relu_: torch.relu,
    F.relu6: F.relu6,
    F.hardtanh: F.hardtanh,
    F.leaky_relu: F.leaky_relu,
    F.elu: F.elu,
    F.softplus: F.softplus,
    torch.sigmoid: torch.sigmoid,
    torch.Tensor.sigmoid: torch.sigmoid,
    F.sigmoid: torch.sigmoid,
    torch.tanh: torch.tanh,
    torch.Tensor.tanh: torch.tanh,
    F.tanh: torch.tanh,
    F.silu: F.silu,
    F.gelu: F.gelu,
    F.hardswish: F.hardswish,
    F.hardsigmoid: F.hardsigmoid,
    F.mish: F.mish,
}
_POOLS: dict[Callable[..., Any], Callable[..., torch.Tensor]] = {
    F.max_pool1d: F.max_pool1d,
    F.max_pool2d: F.max_pool2d,
    F.max_pool3d: F.max_pool3d,
}
_NO_INPLACE = {"inplace"}


class RescaleMode(TorchFunctionMode):
    """Routes every nonlinearity called while active (with gradients on) through `Rescaled`."""

    def __init__(self, state: RescaleState) -> None:
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
        elementwise, pool = _ELEMENTWISE.get(func), _POOLS.get(func)
        x = args[0] if args else None
        if (
            (elementwise is None and pool is None)
            or self.state.busy
            or not isinstance(x, torch.Tensor)
            or not (torch.is_grad_enabled() and x.requires_grad)
        ):
            return func(*args, **kwargs)
        if pool is not None:
            params = _pool_params(args, kwargs)
            if params is None:
                return func(*args, **kwargs)
            fn = pool
        else:
            params = {k: v for k, v in kwargs.items() if k not in _NO_INPLACE}
            fn = _bind(cast(Callable[..., torch.Tensor], elementwise), args[1:])
        self.state.calls += 1
        return Rescaled.apply(x, fn, params, pool is not None, self.state)


def _bind(fn: Callable[..., torch.Tensor], extra: tuple[Any, ...]) -> Callable[..., torch.Tensor]:
    """fn with its positional parameters after the input (a slope, min / max, ...) bound; an
    `inplace` flag is dropped (the call is computed out of place, its result used through the
    return value, as `rules.RuleMode` does)."""
    extra = tuple(a for a in extra if not isinstance(a, bool))  # `inplace`: out of place
    if not extra:
        return fn

    def bound(x: torch.Tensor, **params: Any) -> torch.Tensor:
        return fn(x, *extra, **params)

    return bound
