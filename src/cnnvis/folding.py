"""BatchNorm folding for the many-forward methods (Score-CAM, occlusion, integrated gradients).

`BatchNormFolding(model)` calls the model with every eval-mode BatchNorm folded into the
convolution that feeds it, conv'(x) = BN(conv(x)), without changing the model: a
`TorchFunctionMode` sees the calls. The same values up to rounding, one elementwise pass over
each such activation fewer (forward and, under autograd, backward).
"""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

log = logging.getLogger(__name__)

_CONV2D = ("input", "weight", "bias")  # conv2d's leading parameters, in order
_BATCH_NORM = (
    "input",
    "running_mean",
    "running_var",
    "weight",
    "bias",
    "training",
    "momentum",
    "eps",
)
_T = torch.Tensor
# A property read such as `x.shape` reaches the mode as the `__get__` of the property's
# descriptor; torch's stubs type `Tensor.shape` as the value (a Size), so the descriptor is
# looked up as it is stored on the class.
_PROPERTIES = ("shape", "ndim", "dtype", "device", "layout", "is_cuda", "requires_grad")
_METADATA: set[Callable[..., object]] = {  # calls that read a tensor's metadata, not its values
    _T.dim, _T.size, _T.numel, _T.stride, _T.is_contiguous, _T.__len__,
    *(inspect.getattr_static(_T, name).__get__ for name in _PROPERTIES),
}  # fmt: skip


FOLD_MIN_ELEMENTS = 2**22


class _Mismatch(Exception):
    """A forward strayed from the probed sequence of convolutions and BatchNorms."""


@dataclass
class _Fold:
    """conv2d(x, weight, bias) then batch_norm(running_mean, ...) as one conv2d."""

    weight: torch.Tensor  # the convolution's own weight, bias and the BatchNorm's running
    bias: torch.Tensor | None  # mean: each folded call checks it meets the same tensors
    mean: torch.Tensor
    folded_weight: torch.Tensor
    folded_bias: torch.Tensor


def _arguments(
    names: tuple[str, ...], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """A call's leading arguments by name, positional or keyword (None when absent)."""
    found = dict(zip(names, args, strict=False))
    return {name: found[name] if name in found else kwargs.get(name) for name in names}


@torch.no_grad()
def _fold(conv: dict[str, Any], norm: dict[str, Any]) -> _Fold:
    """W' = W γ / sqrt(var + eps), b' = (b - mean) γ / sqrt(var + eps) + β (constants: no
    autograd history, so a folded forward under autograd differentiates the input only)."""
    weight, bias = conv["weight"], conv["bias"]
    eps = 1e-5 if norm["eps"] is None else norm["eps"]
    scale = torch.rsqrt(norm["running_var"] + eps)
    if norm["weight"] is not None:
        scale = scale * norm["weight"]
    shift = -norm["running_mean"] * scale
    if bias is not None:
        shift = shift + bias * scale
    if norm["bias"] is not None:
        shift = shift + norm["bias"]
    shape = (-1,) + (1,) * (weight.dim() - 1)
    folded = (weight * scale.view(shape)).to(weight.dtype)
    return _Fold(weight, bias, norm["running_mean"], folded, shift.to(weight.dtype))


def _reads(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[torch.Tensor]:
    """The tensors whose values a call reads."""
    if func in _METADATA:
        return []
    found = []
    for arg in (*args, *kwargs.values()):
        if isinstance(arg, torch.Tensor):
            found.append(arg)
        elif isinstance(arg, list | tuple):
            found.extend(t for t in arg if isinstance(t, torch.Tensor))
    return found


_Value = TypeVar("_Value")


class _Tracked(Generic[_Value]):
    """Tensors by identity, held by weak reference (never kept alive by the tracking)."""

    def __init__(self) -> None:
        self._refs: dict[int, tuple[weakref.ref[torch.Tensor], _Value]] = {}

    def add(self, tensor: torch.Tensor, value: _Value) -> None:
        self._refs[id(tensor)] = (weakref.ref(tensor), value)

    def get(self, tensor: torch.Tensor) -> _Value | None:
        ref, value = self._refs.get(id(tensor), (None, None))
        return value if ref is not None and ref() is tensor else None

    def pop(self, tensor: torch.Tensor) -> _Value | None:
        value = self.get(tensor)
        if value is not None:
            del self._refs[id(tensor)]
        return value


class _Probe(TorchFunctionMode):
    """One ordinary forward that finds the conv2d calls (by their order) whose output is read
    by nothing but an eval-mode batch_norm with running statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        # conv2d output -> (call index, its arguments)
        self.outputs: _Tracked[tuple[int, dict[str, Any]]] = _Tracked()
        self.folds: dict[int, _Fold] = {}
        self.spoiled: set[int] = set()
        self.normalized = 0  # elements through the foldable batch_norms

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Collection[type],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is F.batch_norm:
            norm = _arguments(_BATCH_NORM, args, kwargs)
            found = self.outputs.get(norm["input"])
            if found is not None and self._foldable(norm, *found):
                self.folds[found[0]] = _fold(found[1], norm)
                self.normalized += norm["input"].numel()
                return func(*args, **kwargs)
        for tensor in _reads(func, args, kwargs):
            found = self.outputs.get(tensor)
            if found is not None:
                self.spoiled.add(found[0])
        out = func(*args, **kwargs)
        if func is torch.conv2d:
            self.outputs.add(out, (self.calls, _arguments(_CONV2D, args, kwargs)))
            self.calls += 1
        return out

    def _foldable(self, norm: dict[str, Any], index: int, conv: dict[str, Any]) -> bool:
        stats = norm["running_mean"] is not None and norm["running_var"] is not None
        leaf = isinstance(conv["weight"], nn.Parameter)  # not computed in the forward
        return stats and leaf and not norm["training"] and index not in self.folds

    def plan(self) -> dict[int, _Fold]:
        return {i: fold for i, fold in self.folds.items() if i not in self.spoiled}


class _Folded(TorchFunctionMode):
    """A forward with the planned conv2d calls folded and their batch_norm calls skipped;
    `_Mismatch` as soon as it strays from the plan (another weight, another BatchNorm, the
    convolution's output read by anything else)."""

    def __init__(self, plan: dict[int, _Fold]) -> None:
        super().__init__()
        self.plan = plan
        self.calls = 0
        # folded conv2d outputs -> their fold, or False once used
        self.folded: _Tracked[_Fold | bool] = _Tracked()
        self.skipped = 0

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Collection[type],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is torch.conv2d:
            fold = self.plan.get(self.calls)
            self.calls += 1
            if fold is not None:
                return self._conv(fold, args, kwargs)
        elif func is F.batch_norm:
            norm = _arguments(_BATCH_NORM, args, kwargs)
            pending = self.folded.get(norm["input"])
            if isinstance(pending, _Fold):
                if norm["running_mean"] is not pending.mean:
                    raise _Mismatch("a folded convolution fed another BatchNorm")
                self.folded.add(norm["input"], False)  # its BatchNorm is done
                self.skipped += 1
                return norm["input"].view_as(norm["input"])  # a new tensor, the same values
        for tensor in _reads(func, args, kwargs):
            if self.folded.get(tensor) is not None:
                raise _Mismatch("a folded convolution's output was read by something else")
        return func(*args, **kwargs)

    def _conv(self, fold: _Fold, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
        conv = _arguments(_CONV2D, args, kwargs)
        if conv["weight"] is not fold.weight or conv["bias"] is not fold.bias:
            raise _Mismatch(f"convolution {self.calls - 1} has other weights")
        rest = {k: v for k, v in kwargs.items() if k not in _CONV2D}
        out = torch.conv2d(conv["input"], fold.folded_weight, fold.folded_bias, *args[3:], **rest)
        self.folded.add(out, fold)
        return out


class BatchNormFolding:
    """Calls `model` with every eval-mode BatchNorm folded into the convolution that feeds it:
    conv'(x) = BN(conv(x)) with W' = W γ/σ, b' = (b - μ) γ/σ + β — the same values up to
    rounding, one pass over each such activation fewer (about 10% of ResNet-18's forward on
    CPU). The model and its modules are never changed: a `TorchFunctionMode` (thread-local)
    sees the calls. The first forward runs as it is and finds the foldable pairs: a conv2d
    whose weight is a parameter and whose output nothing reads but an eval-mode batch_norm
    with running statistics (a hook reading it, a residual branch taking it, a BatchNorm in
    train mode: not folded). Later forwards check every folded call against that plan and,
    at the first difference (data-dependent control flow), run again without folding, which
    then stays off. `rows`: the batch size of the later forwards, when the first one (the
    probe) is smaller; folding is used only when a forward of `rows` rows sends at least
    `FOLD_MIN_ELEMENTS` elements through the folded BatchNorms."""

    def __init__(self, model: nn.Module, rows: int | None = None) -> None:
        self.model = model
        self.rows = rows
        self.plan: dict[int, _Fold] | None = None

    def __call__(self, x: torch.Tensor) -> Any:
        if self.plan is None:
            with _Probe() as probe:
                out = self.model(x)
            self.plan = probe.plan()
            per_row = probe.normalized / max(1, x.shape[0])
            if per_row * (self.rows or x.shape[0]) < FOLD_MIN_ELEMENTS:  # too little to win
                self.plan = {}  # back the mode's cost
            log.debug("%d of %d convolutions folded", len(self.plan), probe.calls)
            return out
        if not self.plan:
            return self.model(x)
        try:
            with _Folded(self.plan) as mode:
                out = self.model(x)
            if mode.skipped != len(self.plan):
                raise _Mismatch(f"{mode.skipped} of {len(self.plan)} folds met their BatchNorm")
            return out
        except _Mismatch as error:
            log.info("BatchNorm folding stopped (%s); forwarding as it is", error)
            self.plan = {}
            return self.model(x)


def foldable_pairs(model: nn.Module, x: torch.Tensor) -> list[_Fold]:
    """The conv2d -> BatchNorm pairs of one forward of `model` on `x` that fold (as
    `BatchNormFolding` finds them), each with the folded weight and bias; the model runs as it
    is, without gradients, and is not changed (LRP's canonizer merges them into a copy)."""
    with _Probe() as probe, torch.no_grad():
        model(x)
    return list(probe.plan().values())
