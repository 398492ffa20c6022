"""The operations of a forward that LRP treats by what they compute, module or functional.

While the relevance forward runs, `RelevanceMode` (a `TorchFunctionMode`) sees every call,
whether it comes from a module (`nn.ReLU`, `nn.AvgPool2d`) or from the model's own `forward`
(`F.relu` in DenseNet, `out += identity` in ResNet, `x * scale` in squeeze-excitation), and
routes the ones below through autograd functions whose backward carries relevance:

- activations (ReLU, ReLU6, SiLU, GELU, ...) and batch normalization: pass (R_in = R_out);
  in-place calls are computed out of place (their results are used through the return value,
  as torchvision and timm do);
- average pooling and means: the ε-rule with ε = 1e-6 (a linear map without weights);
- the sum or difference of two activations (residual connections): split in proportion to
  each term's contribution, R_a = a · R / (a + b) (Zennit's residual canonizer);
- a product with a gate of fewer elements (squeeze-excitation's x · σ(s)): all to x, the gate
  is a constant; a product with a constant: pass;
- products of two activations of the same shape, divisions and matrix products of two
  activations (attention): refused with a `MethodError` naming the block, since no rule
  here splits them correctly.

Concatenation, reshapes, slicing, padding and max pooling keep their gradient, which moves
relevance without changing it (max pooling: all to the winner).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ...errors import MethodError
from .rules import STABILIZER, stabilize

_T = torch.Tensor

# activation -> position of its `inplace` argument (None: no such argument)
_ACTIVATIONS: dict[Callable[..., Any], int | None] = {
    F.relu: 1,
    torch.relu: None,
    _T.relu: None,
    F.relu6: 1,
    F.hardtanh: 3,
    F.silu: 1,
    F.gelu: None,
    F.hardswish: 1,
    F.leaky_relu: 2,
    F.elu: 2,
    F.mish: 1,
    F.batch_norm: None,
}
_IN_PLACE = {torch.relu_: torch.relu, _T.relu_: _T.relu}
_POOLS = {
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
    torch.mean,
    _T.mean,
}
_SUMS = {torch.add, _T.add, _T.__add__, _T.__radd__, _T.__iadd__, _T.add_}
_DIFFERENCES = {torch.sub, _T.sub, _T.__sub__, _T.__isub__, _T.sub_}
_PRODUCTS = {torch.mul, _T.mul, _T.__mul__, _T.__rmul__, _T.__imul__, _T.mul_}
_QUOTIENTS = {torch.div, _T.div, _T.__truediv__, _T.__itruediv__, _T.div_}
_MATRIX = {torch.matmul, _T.matmul, _T.__matmul__, torch.bmm, _T.bmm, torch.einsum, F.linear}
_OUT_OF_PLACE = {
    _T.__iadd__: torch.add,
    _T.add_: torch.add,
    _T.__isub__: torch.sub,
    _T.sub_: torch.sub,
    _T.__imul__: torch.mul,
    _T.mul_: torch.mul,
}


class _Pass(torch.autograd.Function):
    """y = f(x); the relevance passes unchanged."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
        return fn(x)

    @staticmethod
    def backward(ctx: Any, relevance: torch.Tensor) -> tuple[torch.Tensor, None]:
        return relevance, None


class _Proportional(torch.autograd.Function):
    """y = f(x) for f linear without weights (pooling, a mean); R_x = x ⊙ ∂f/∂xᵀ(R / stab(y))."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
        ctx.save_for_backward(x)
        ctx.fn = fn
        return fn(x)

    @staticmethod
    def backward(ctx: Any, relevance: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            z = ctx.fn(leaf)
            (g,) = torch.autograd.grad(z, leaf, relevance / stabilize(z, STABILIZER))
        return x * g, None


class _Split(torch.autograd.Function):
    """y = a ± b of two activations; R_a = a · R / stab(y), R_b = ±b · R / stab(y) (summed over
    broadcast dimensions)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, sign: float) -> Any:
        ctx.save_for_backward(a, b)
        ctx.sign = sign
        return a + sign * b

    @staticmethod
    def backward(ctx: Any, relevance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        a, b = ctx.saved_tensors
        s = relevance / stabilize(a + ctx.sign * b, STABILIZER)
        return _reduce(a * s, a.shape), _reduce(ctx.sign * b * s, b.shape), None


class _Gate(torch.autograd.Function):
    """y = x · gate (the gate broadcast); R_x = R, the gate gets none."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, gate: torch.Tensor) -> Any:
        ctx.gate_shape = gate.shape
        return x * gate

    @staticmethod
    def backward(ctx: Any, relevance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return relevance, relevance.new_zeros(ctx.gate_shape)


def _reduce(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """`t` summed down to `shape` (undoing broadcasting)."""
    if t.shape == shape:
        return t
    extra = t.dim() - len(shape)
    t = t.sum(dim=tuple(range(extra))) if extra else t
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and t.shape[i] != 1)
    return t.sum(dim=dims, keepdim=True) if dims else t


def _traced(x: object) -> bool:
    return isinstance(x, torch.Tensor) and x.requires_grad


class RelevanceMode(TorchFunctionMode):
    """Routes the relevance-relevant calls of a forward (see the module docstring); `names`
    (module -> dotted name) names the block in an error."""

    def __init__(self, names: dict[nn.Module, str]) -> None:
        super().__init__()
        self.names = names

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Collection[type],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if not torch.is_grad_enabled() or not any(map(_traced, args)):
            return func(*args, **kwargs)
        if func in _ACTIVATIONS or func in _IN_PLACE:
            return _Pass.apply(args[0], _out_of_place(func, args[1:], kwargs))
        if func in _POOLS and _traced(args[0]):
            rest = args[1:]
            return _Proportional.apply(args[0], lambda t: func(t, *rest, **kwargs))
        if len(args) >= 2 and not kwargs:
            found = self._binary(func, args[0], args[1])
            if found is not None:
                return found
        if func in _MATRIX and sum(map(_traced, [*args, *kwargs.values()])) >= 2:
            self._refuse("a product of two activations (attention)")
        return func(*args, **kwargs)

    def _binary(self, func: Callable[..., Any], a: Any, b: Any) -> torch.Tensor | None:
        """A sum, difference, product or quotient with at least one traced operand."""
        both = _traced(a) and _traced(b)
        if func in _SUMS or func in _DIFFERENCES:
            if not both:
                return None  # a constant shift (a bias): the gradient passes R to the input
            return _Split.apply(a, b, 1.0 if func in _SUMS else -1.0)  # type: ignore[no-any-return]
        if func in _PRODUCTS:
            if not both:
                x = a if _traced(a) else b
                other = b if x is a else a
                if x.shape != _broadcast(x.shape, _shape(other)):
                    return None
                return _Pass.apply(x, lambda t: t * other)  # type: ignore[no-any-return]
            big, small = (a, b) if a.numel() >= b.numel() else (b, a)
            if big.shape == small.shape:
                self._refuse("the product of two activations of the same shape (a gating)")
            return _Gate.apply(big, small)  # type: ignore[no-any-return]
        if func in _QUOTIENTS:
            if both:
                self._refuse("a quotient of two activations")
            if _traced(a) and a.shape == _broadcast(a.shape, _shape(b)):
                return _Pass.apply(a, lambda t: t / b)  # type: ignore[no-any-return]
        return None

    def _refuse(self, what: str) -> None:
        block = _calling_block(self.names)
        raise MethodError(
            f"lrp: block {block} has {what}, which no LRP rule here splits correctly, so its "
            "relevance map would be wrong; explain this model with a gradient method "
            "(gradient-x-input, integrated-gradients) instead"
        )


def _broadcast(a: torch.Size, b: torch.Size) -> torch.Size:
    shape: torch.Size = torch.broadcast_shapes(a, b)  # type: ignore[no-untyped-call]
    return shape


def _shape(t: object) -> torch.Size:
    return t.shape if isinstance(t, torch.Tensor) else torch.Size()


def _out_of_place(
    func: Callable[..., Any], rest: tuple[Any, ...], kwargs: dict[str, Any]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """f(x) computed out of place (an `inplace` argument turned off, relu_ -> relu)."""
    func = _IN_PLACE.get(func, func)
    position = _ACTIVATIONS.get(func)
    kwargs = {**kwargs, "inplace": False} if "inplace" in kwargs else kwargs
    if position is not None and len(rest) >= position:
        rest = (*rest[: position - 1], False, *rest[position:])
    return lambda t: func(t, *rest, **kwargs)


def _calling_block(names: dict[nn.Module, str]) -> str:
    """The dotted name (and class) of the innermost module whose `forward` is running."""
    frame = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, nn.Module) and owner in names:
            name = names[owner] or "(the model itself)"
            return f"{name} ({type(owner).__name__})"
        frame = frame.f_back  # type: ignore[assignment]
    return "(unknown)"
