"""LRP rules for linear layers (convolutions, dense layers) as modified gradients.

A rule turns the relevance R_out of a layer's output into the relevance of its input. Every
rule here is the "modified gradient" form (Montavon et al. 2019, "Layer-wise relevance
propagation: an overview"): with modified weights W′ (and inputs x′),

    z′ = W′ x′ + b′,   s = R_out / stab(z′),   R_in = x′ ⊙ (W′ᵀ s)

where W′ᵀ s is the gradient of z′ with respect to x′ taken with s as output gradient, and
stab(z) = z + ε·sign(z) (sign(0) = +1). The rules:

- epsilon (LRP-ε):         W′ = W, b′ = b; ε = `epsilon` (LRP-0 at ε = 0).
- gamma:                   W + γ W⁺ for positive inputs (and the mirror terms for the negative
                           outputs), favouring positive contributions.
- alpha-beta (αβ):         α R⁺ − β R⁻ with R⁺ from the positive contributions (W⁺ x⁺ + W⁻ x⁻)
                           and R⁻ from the negative ones; α − β = 1 (α2β1, α1β0).
- z-plus (z⁺):             the positive contributions only (= α1β0).
- z-box (zᴮ):              for a bounded input l ≤ x ≤ h (the first layer): z = Wx − W⁺l − W⁻h.
- flat:                    W′ = 1, x′ = 1: relevance spread uniformly over the receptive field.
- w-square (w²):           W′ = W², x′ = 1.
- pass:                    R_in = R_out (elementwise layers).

The positive/negative splits follow Zennit's (Anders et al. 2021) conventions, so its maps can
serve as the reference: the bias joins the term of its sign on the input side that it shares
(b⁺ with W⁺x⁺, b⁻ with W⁻x⁺), and is dropped from the mirrored terms; w-square squares the bias
and flat drops it. The stabilizer of every rule but epsilon is 1e-6.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import MethodError

Op = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
"""A linear layer as a function of (input, weight, bias)."""

STABILIZER = 1e-6


def stabilize(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """z + ε·sign(z), with sign(0) = +1: a denominator that is never zero."""
    return z + ((z == 0).to(z.dtype) + z.sign()) * epsilon


_BASE_FORWARDS = {nn.Conv1d.forward, nn.Conv2d.forward, nn.Conv3d.forward, nn.Linear.forward}
IN_RULE = threading.local()
"""`IN_RULE.active` is True while a rule runs a layer's own forward (a subclass such as timm's
`Conv2dSame` with its padding), so that the layer's forward hooks stay out of the way."""


def linear_op(module: nn.Module) -> Op:
    """The module's linear map as op(x, weight, bias); a MethodError for other modules."""
    if not isinstance(module, nn.modules.conv._ConvNd | nn.Linear) or getattr(
        module, "transposed", False
    ):
        raise MethodError(
            f"LRP weight rules apply to convolutions and linear layers, not "
            f"{type(module).__name__}; give it the 'pass' rule or use a composite that leaves "
            "it out"
        )
    if type(module).forward not in _BASE_FORWARDS:  # its own forward (padding, ...)
        return lambda x, w, b: _own_forward(module, x, w, b)
    if isinstance(module, nn.Linear):
        return F.linear
    conv = module

    def convolve(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        out: torch.Tensor = conv._conv_forward(x, w, b)
        return out

    return convolve


def _own_forward(
    module: nn.Module, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None
) -> torch.Tensor:
    """The module's own forward with weight `w` and bias `b` (zeros for None)."""
    params = {"weight": w}
    if getattr(module, "bias", None) is not None:
        params["bias"] = torch.zeros_like(module.bias) if b is None else b  # type: ignore[arg-type]
    IN_RULE.active = True
    try:
        out: torch.Tensor = torch.func.functional_call(module, params, (x,))
    finally:
        IN_RULE.active = False
    return out


def _parameters(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    weight = module.weight
    bias = getattr(module, "bias", None)
    if not isinstance(weight, torch.Tensor):
        raise MethodError(f"{type(module).__name__} has no weight tensor for an LRP rule")
    return weight.detach(), None if bias is None else bias.detach()


Term = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]
"""(modified input x′, modified weight W′, modified bias b′) of one z′ term."""


def _outputs(op: Op, terms: Sequence[Term]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The leaves x′ (requiring grad) and z′ = op(x′, W′, b′) of each term."""
    leaves = [x.detach().requires_grad_(True) for x, _, _ in terms]
    return leaves, [op(x, w, b) for x, (_, w, b) in zip(leaves, terms, strict=True)]


def _gradients(
    leaves: list[torch.Tensor], outputs: list[torch.Tensor], seeds: list[torch.Tensor]
) -> list[torch.Tensor]:
    """W′ᵀ s of each term: the gradient of z′ at x′ with `seeds` as output gradients."""
    grads = torch.autograd.grad(outputs, leaves, seeds)
    return list(grads)


def _positive(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.clamp(min=0)


def _negative(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.clamp(max=0)


class Rule:
    """An LRP rule: `relevance(module, x, r_out)` is the relevance of the module's input."""

    name = "rule"

    def relevance(self, module: nn.Module, x: torch.Tensor, r_out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True, repr=False)
class Epsilon(Rule):
    """LRP-ε: R_in = x ⊙ Wᵀ(R_out / stab(Wx + b, ε)) (Bach et al. 2015)."""

    epsilon: float = 1e-6
    name = "epsilon"

    def relevance(self, module: nn.Module, x: torch.Tensor, r_out: torch.Tensor) -> torch.Tensor:
        w, b = _parameters(module)
        leaves, (z,) = _outputs(linear_op(module), [(x, w, b)])
        (g,) = _gradients(leaves, [z], [r_out / stabilize(z, self.epsilon)])
        return x * g


@dataclass(frozen=True, repr=False)
class ZPlus(Rule):
    """z⁺: R_in = x⁺ ⊙ W⁺ᵀs + x⁻ ⊙ W⁻ᵀs, s = R_out / (W⁺x⁺ + b⁺ + W⁻x⁻) (Montavon et al.
    2017; negative inputs allowed as in α1β0)."""

    name = "z-plus"

    def relevance(self, module: nn.Module, x: torch.Tensor, r_out: torch.Tensor) -> torch.Tensor:
        w, b = _parameters(module)
        op = linear_op(module)
        if not _has_negatives(x):  # after a ReLU: the x⁻ term is zero, skip its two passes
            leaves, (z,) = _outputs(op, [(x, w.clamp(min=0), _positive(b))])
            (g,) = _gradients(leaves, [z], [r_out / stabilize(z, STABILIZER)])
            return x * g
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        terms = [(xp, w.clamp(min=0), _positive(b)), (xn, w.clamp(max=0), None)]
        leaves, (z1, z2) = _outputs(op, terms)
        s = r_out / stabilize(z1 + z2, STABILIZER)
        g1, g2 = _gradients(leaves, [z1, z2], [s, s])
        return xp * g1 + xn * g2


def _has_negatives(x: torch.Tensor) -> bool:
    return bool((x < 0).any())


@dataclass(frozen=True, repr=False)
class AlphaBeta(Rule):
    """αβ: R_in = α R⁺ − β R⁻ (Bach et al. 2015), R⁺ from W⁺x⁺ + b⁺ + W⁻x⁻ and R⁻ from
    W⁻x⁺ + b⁻ + W⁺x⁻; α − β must be 1."""

    alpha: float = 2.0
    beta: float = 1.0

    def __post_init__(self) -> None:
        if self.alpha < 0 or self.beta < 0 or abs(self.alpha - self.beta - 1) > 1e-9:
            raise MethodError(
                f"alpha-beta rule: alpha and beta must be >= 0 with alpha - beta = 1 "
                f"(conservation), got alpha={self.alpha}, beta={self.beta}"
            )

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"alpha{self.alpha:g}-beta{self.beta:g}"

    def relevance(self, module: nn.Module, x: torch.Tensor, r_out: torch.Tensor) -> torch.Tensor:
        w, b = _parameters(module)
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        if not _has_negatives(x):  # after a ReLU: the x⁻ terms are zero, skip their passes
            leaves, (z1, z2) = _outputs(
                linear_op(module), [(x, wp, _positive(b)), (x, wn, _negative(b))]
            )
            sp = r_out / stabilize(z1, STABILIZER)
            sn = r_out / stabilize(z2, STABILIZER)
            g1, g2 = _gradients(leaves, [z1, z2], [sp, sn])
            return self.alpha * (x * g1) - self.beta * (x * g2)
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        terms = [(xp, wp, _positive(b)), (xn, wn, None), (xp, wn, _negative(b)), (xn, wp, None)]
        leaves, z = _outputs(linear_op(module), terms)
        sp = r_out / stabilize(z[0] + z[1], STABILIZER)
        sn = r_out / stabilize(z[2] + z[3], STABILIZER)
        g = _gradients(leaves, z, [sp, sp, sn, sn])
        positive = xp * g[0] + xn * g[1]
        negative = xp * g[2] + xn * g[3]
        return self.alpha * positive - self.beta * negative


@dataclass(frozen=True, repr=False)
class Gamma(Rule):
    """γ: weights W + γW⁺ on the positive contributions of positive outputs (and W + γW⁻ on
    the negative contributions of negative outputs) (Montavon et al. 2019)."""

    gamma: float = 0.25
    name = "gamma"

    def relevance(self, module: nn.Module, x: torch.Tensor, r_out: torch.Tensor) -> torch.Tensor:
        w, b = _parameters(module)
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        wp, wn = w + self.gamma * w.clamp(min=0), w + self.gamma * w.clamp(max=0)
        bp = None if b is None else b + self.gamma * b.clamp(min=0)
        bn = None if b is None else b + self.gamma * b.clamp(max=0)
        terms = [(xp, wp, bp), (xn, wn, None), (xp, wn, bn), (xn, wp, None)]
        op = linear_op(module)
        leaves, z = _outputs(op, terms)
        with torch.no_grad():
            out = op(x, w, b)
        sp = r_out * (out > 0) / stabilize(z[0] + z[1], STABILIZER)
        sn = r_out * (out < 0) / stabilize(z[2] + z[3], STABILIZER)
        g = _gradients(leaves, z, [sp, sp, sn, sn])
        return xp * g[0] + xn * g[1] + xp * g[2] + xn * g[3]


@dataclass(frozen=True, repr=False)
class ZBox(Rule):
    """zᴮ for inputs bounded by l ≤ x ≤ h (the pixel layer): z = Wx + b − (W⁺l + b⁺) −
    (W⁻h + b⁻), R_in = x ⊙ Wᵀs − l ⊙ W⁺ᵀs − h ⊙ W⁻ᵀs (Montavon et al. 2017). `low` and
    `high` broadcast to the input (floats, or per-channel tensors shaped (1, C, 1, 1))."""

    low: float | torch.Tensor
    high: float | torch.Tensor
    name = "z-box"

    def relevance(self, module: nn.Module, x: torch.Tensor, r_out: torch.Tensor) -> torch.Tensor:
        w, b = _parameters(module)
        low = torch.as_tensor(self.low, dtype=x.dtype, device=x.device).expand_as(x)
        high = torch.as_tensor(self.high, dtype=x.dtype, device=x.device).expand_as(x)
        terms = [
            (x, w, b),
            (low, w.clamp(min=0), _positive(b)),
            (high, w.clamp(max=0), _negative(b)),
        ]
        leaves, z = _outputs(linear_op(module), terms)
        s = r_out / stabilize(z[0] - z[1] - z[2], STABILIZER)
        g = _gradients(leaves, z, [s, s, s])
        return x * g[0] - low * g[1] - high * g[2]


@dataclass(frozen=True, repr=False)
class WSquare(Rule):
    """w²: R_in = (W²)ᵀ(R_out / (W² 1 + b²)) (Montavon et al. 2017): independent of x."""

    name = "w-square"

    def relevance(self, module: nn.Module, x: torch.Tensor, r_out: torch.Tensor) -> torch.Tensor:
        w, b = _parameters(module)
        leaves, (z,) = _outputs(linear_op(module), [(torch.ones_like(x), w**2, _square(b))])
        (g,) = _gradients(leaves, [z], [r_out / stabilize(z, STABILIZER)])
        return g


def _square(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t**2


@dataclass(frozen=True, repr=False)
class Flat(Rule):
    """flat: R_in = 1ᵀ(R_out / (1·1)): each output's relevance spread evenly over its
    receptive field (Lapuschkin et al. 2019)."""

    name = "flat"

    def relevance(self, module: nn.Module, x: torch.Tensor, r_out: torch.Tensor) -> torch.Tensor:
        w, _ = _parameters(module)
        leaves, (z,) = _outputs(linear_op(module), [(torch.ones_like(x), torch.ones_like(w), None)])
        (g,) = _gradients(leaves, [z], [r_out / stabilize(z, STABILIZER)])
        return g


@dataclass(frozen=True, repr=False)
class Pass(Rule):
    """pass: R_in = R_out (for layers that keep the shape: normalizations, activations)."""

    name = "pass"

    def relevance(self, module: nn.Module, x: torch.Tensor, r_out: torch.Tensor) -> torch.Tensor:
        if r_out.shape != x.shape:
            raise MethodError(
                f"the 'pass' rule needs a layer whose output has its input's shape; "
                f"{type(module).__name__} maps {tuple(x.shape)} to {tuple(r_out.shape)}"
            )
        return r_out


RULE_NAMES = (
    "epsilon",
    "gamma",
    "alpha2-beta1",
    "alpha1-beta0",
    "z-plus",
    "z-box",
    "flat",
    "w-square",
    "pass",
)


def make_rule(
    spec: str | Rule,
    *,
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    low: float | torch.Tensor | None = None,
    high: float | torch.Tensor | None = None,
) -> Rule:
    """A rule from its name (`RULE_NAMES`) or as given; `epsilon`, `gamma`, `low` and `high`
    parametrize the named ones."""
    if isinstance(spec, Rule):
        return spec
    named: dict[str, Callable[[], Rule]] = {
        "epsilon": lambda: Epsilon(epsilon),
        "gamma": lambda: Gamma(gamma),
        "alpha2-beta1": lambda: AlphaBeta(2.0, 1.0),
        "alpha1-beta0": lambda: AlphaBeta(1.0, 0.0),
        "z-plus": ZPlus,
        "z-box": lambda: _zbox(low, high),
        "flat": Flat,
        "w-square": WSquare,
        "pass": Pass,
    }
    if not isinstance(spec, str) or spec not in named:
        raise MethodError(f"unknown LRP rule {spec!r}; one of {', '.join(RULE_NAMES)}")
    return named[spec]()


def _zbox(low: float | torch.Tensor | None, high: float | torch.Tensor | None) -> Rule:
    if low is None or high is None:
        raise MethodError(
            "the z-box rule needs the input's bounds low and high (e.g. the normalized black "
            "and white images); pass low= and high="
        )
    return ZBox(low, high)
