"""Score-CAM: feature maps weighted by the score of the input masked by each of them.

Wang et al. 2020, arXiv:1910.01279. For channel k of the layer's activation A (N, C, h, w) the
mask M_k = minmax(U(A_k)), U bilinear upsampling to the input size (align_corners=False),
multiplies the input; the forward of X ⊙ M_k gives s_k, the target's logit (or the unit's
activation for a unit target), and

    softmax="channels" (default)  w = softmax_k(s_k)               TorchCAM, pytorch-grad-cam
    softmax="classes"             w_k = softmax(f(X ⊙ M_k))_c      the paper's reference code

map = Σ_k w_k A_k, raw (before Score-CAM's ReLU). Where the implementations differ:
- mask: upsampled, then min-max normalised (the paper's code). TorchCAM normalises at the
  layer's resolution before upsampling; pytorch-grad-cam upsamples with align_corners=True.
- baseline: TorchCAM subtracts the unmasked input's score, which the softmax over channels
  cancels exactly; there is none here.
- a constant channel (max = min at the layer's resolution, e.g. all zero after a ReLU) has an
  all-zero mask (TorchCAM's (A - min) / (max - min + eps) = 0), so it is scored on X ⊙ 0; the
  paper's code gives it weight 0 instead, which differs only by a constant added to the map when
  the channel is a non-zero constant.

`align_corners=True` reproduces pytorch-grad-cam's masks exactly.

Speed. Savings that cannot change the result (`reuse=True`): every constant channel of every
image masks the input to the same all-zero input, forwarded once for the whole batch, and
bit-identical channels of an image share one forward. The masked inputs run in batches of
`batch_size` under inference mode and, on CPU, with every eval-mode BatchNorm folded into the
convolution before it (`BatchNormFolding`, `fold_batch_norm=True`) and, in float32, in
channels_last memory format (oneDNN's faster layout); both give the same values up to rounding.
Measured on ResNet-18 `layer4`, 224x224, one CPU thread (process CPU seconds, 3 interleaved
runs): 14.7 s plain, 11.0 s channels_last, 9.1 s channels_last + folding. On GPU neither is
applied (not measured there).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..capture import Recording, _first_tensor
from ..errors import MethodError
from ..guard import model_state_guard
from ..layers import resolve_layer
from ..targets import select_logits
from ._batching import choice, positive_int
from .cam import layer_activation, weighted_sum
from .registry import MethodInfo, register

log = logging.getLogger(__name__)

SOFTMAX = ("channels", "classes")
Hook = tuple[nn.Module, Callable]


@contextmanager
def scoring(
    rec: Recording,
    *,
    probabilities: bool = False,
    hooks: Sequence[Hook] = (),
    channels_last: bool = False,
    fold: bool = False,
) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """Yields `score(x) -> (B, N)`: for each row of a batch x, the score of every recorded
    image's target — its logit (softmax probability with `probabilities`), or the unit's
    activation for a unit target. Runs under inference mode with the model in eval mode
    (`model_state_guard`); `hooks` ((module, forward hook), ...) and the unit's hook live only
    inside the block and are removed on exit, also when it raises. `channels_last` runs the
    batches in that memory format (contiguous if the model's code cannot take it); `fold`
    folds eval-mode BatchNorms into the convolutions before them (`BatchNormFolding`)."""
    model, unit, targets = rec.model, rec.unit, rec.targets
    store: dict[str, torch.Tensor] = {}
    run = BatchNormFolding(model) if fold else model

    def unit_hook(module, args, output):
        tensor, _ = _first_tensor(output)
        store["unit"] = unit.scores(tensor).clone()  # before any in-place op downstream

    def forward(x: torch.Tensor) -> torch.Tensor:
        nonlocal channels_last
        if channels_last:
            try:
                return run(x.contiguous(memory_format=torch.channels_last))
            except RuntimeError as error:  # e.g. `.view` on non-contiguous memory
                log.info("channels_last forward failed (%s); using contiguous inputs", error)
                channels_last = False
        return run(x)

    def score(x: torch.Tensor) -> torch.Tensor:
        logits = select_logits(forward(x), rec.output_key)
        dtype = torch.promote_types(logits.dtype, torch.float32)
        if unit is not None:
            values = store.pop("unit").to(dtype)
            return values.expand(logits.shape[0]).clone()[:, None].expand(-1, len(targets))
        logits = logits.to(dtype)
        if probabilities:
            logits = logits.softmax(dim=1)
        return logits[:, targets.to(logits.device)]

    handles = []
    with model_state_guard(model), torch.inference_mode():
        try:
            for module, hook in hooks:
                handles.append(module.register_forward_hook(hook))
            if unit is not None:
                module = resolve_layer(model, unit.layer)
                handles.append(module.register_forward_hook(unit_hook))
            yield score
        finally:
            for handle in handles:
                handle.remove()


def normalized_masks(
    maps: torch.Tensor, size: Sequence[int], align_corners: bool = False
) -> torch.Tensor:
    """(B, 1, h, w) maps upsampled bilinearly to `size`, each min-max normalised to [0, 1]. A
    map that is constant at its own resolution gives an all-zero mask (never NaN, and never the
    rounding noise of interpolating a constant, stretched to [0, 1])."""
    up = F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=align_corners)
    flat = up.flatten(1)
    lo, hi = flat.amin(dim=1), flat.amax(dim=1)
    varies = (maps.flatten(1).amax(dim=1) > maps.flatten(1).amin(dim=1)) & (hi > lo)
    span = torch.where(varies, hi - lo, torch.ones_like(hi))
    view = (-1, 1, 1, 1)
    return (up - lo.view(view)) / span.view(view) * varies.view(view)


def mask_plan(acts: torch.Tensor, reuse: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The maps to forward as masks: (rows (R, h*w), owner image of each row (R,), and the row
    that stands for each channel (N, C)). With `reuse`, one all-zero row serves every constant
    channel of every image, and bit-identical channels of an image share one row."""
    n, c = acts.shape[:2]
    flat = acts.flatten(2)
    device = acts.device
    if not reuse:
        owner = torch.arange(n, device=device).repeat_interleave(c)
        return flat.reshape(n * c, -1), owner, torch.arange(n * c, device=device).view(n, c)
    constant = flat.amax(dim=2) == flat.amin(dim=2)
    rows, owners = [], []
    where = torch.zeros(n, c, dtype=torch.long, device=device)
    count = 0
    if constant.any():  # all those masks are zero: X ⊙ 0 is the same input for every image
        rows.append(flat.new_zeros(1, flat.shape[2]))
        owners.append(torch.zeros(1, dtype=torch.long, device=device))
        count = 1
    for i in range(n):
        live = (~constant[i]).nonzero().squeeze(1)
        unique, inverse = torch.unique(flat[i, live], dim=0, return_inverse=True)
        rows.append(unique)
        owners.append(torch.full((len(unique),), i, dtype=torch.long, device=device))
        where[i, live] = count + inverse
        count += len(unique)
    return torch.cat(rows), torch.cat(owners), where


def channel_scores(
    rec: Recording,
    acts: torch.Tensor,
    batch_size: int = 32,
    probabilities: bool = False,
    reuse: bool = True,
    align_corners: bool = False,
    fold: bool = True,
) -> torch.Tensor:
    """s[n, k]: the score of image n's target on X_n ⊙ M_nk, for every channel (N, C)."""
    x = rec.inputs.detach()
    rows, owner, where = mask_plan(acts, reuse)
    h, w = acts.shape[2:]
    cpu_float = x.device.type == "cpu" and x.dtype == torch.float32
    found = []
    fast = {"channels_last": cpu_float, "fold": fold and x.device.type == "cpu"}
    with scoring(rec, probabilities=probabilities, **fast) as score:
        for start in range(0, len(rows), batch_size):
            chunk = slice(start, start + batch_size)
            masks = normalized_masks(rows[chunk].reshape(-1, 1, h, w), x.shape[2:], align_corners)
            found.append(score(x[owner[chunk]] * masks.to(x.dtype)))
    log.debug("score-cam: %d masked forwards for %d channels", len(rows), where.numel())
    scores = torch.cat(found)  # (R, N): every row scored for every image's target
    images = torch.arange(acts.shape[0], device=scores.device)[:, None]
    return scores[where.to(scores.device), images]


def score_cam(
    rec: Recording,
    layer: str | None,
    batch_size: int = 32,
    softmax: str = "channels",
    reuse: bool = True,
    align_corners: bool = False,
    fold_batch_norm: bool = True,
) -> torch.Tensor:
    """Score-CAM, raw (before its ReLU): Σ_k w_k A_k, w from the scores of the input masked by
    each upsampled, normalised A_k (Wang et al. 2020); see the module's notes for `softmax`."""
    acts = layer_activation(rec, layer).detach()
    choice("softmax", softmax, SOFTMAX, "score-cam")
    positive_int("batch_size", batch_size, "score-cam")
    if softmax == "classes" and rec.unit is not None:
        raise MethodError(
            "score-cam: softmax='classes' needs class logits, and the target is a unit "
            f"({rec.unit}); use softmax='channels', which weighs the unit's activations"
        )
    probabilities = softmax == "classes"
    scores = channel_scores(
        rec, acts, batch_size, probabilities, reuse, align_corners, fold_batch_norm
    )
    weights = scores.softmax(dim=1) if softmax == "channels" else scores
    dtype = torch.promote_types(acts.dtype, torch.float32)
    return weighted_sum(acts.to(dtype), weights.to(dtype))


# ------------------------------------------------------------------ BatchNorm folding


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
_METADATA = {  # calls that read a tensor's metadata, not its values
    _T.dim, _T.size, _T.numel, _T.stride, _T.is_contiguous, _T.__len__, _T.shape.__get__,
    _T.ndim.__get__, _T.dtype.__get__, _T.device.__get__, _T.layout.__get__,
    _T.is_cuda.__get__, _T.requires_grad.__get__,
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


def _arguments(names: tuple[str, ...], args: tuple, kwargs: dict) -> dict:
    """A call's leading arguments by name, positional or keyword (None when absent)."""
    found = dict(zip(names, args, strict=False))
    return {name: found[name] if name in found else kwargs.get(name) for name in names}


def _fold(conv: dict, norm: dict) -> _Fold:
    """W' = W γ / sqrt(var + eps), b' = (b - mean) γ / sqrt(var + eps) + β."""
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


def _reads(func, args: tuple, kwargs: dict) -> list[torch.Tensor]:
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


class _Tracked:
    """Tensors by identity, held by weak reference (never kept alive by the tracking)."""

    def __init__(self) -> None:
        self._refs: dict[int, tuple[weakref.ref, object]] = {}

    def add(self, tensor: torch.Tensor, value: object) -> None:
        self._refs[id(tensor)] = (weakref.ref(tensor), value)

    def get(self, tensor: torch.Tensor) -> object | None:
        ref, value = self._refs.get(id(tensor), (None, None))
        return value if ref is not None and ref() is tensor else None

    def pop(self, tensor: torch.Tensor) -> object | None:
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
        self.outputs = _Tracked()  # conv2d output -> (call index, its arguments)
        self.folds: dict[int, _Fold] = {}
        self.spoiled: set[int] = set()
        self.normalized = 0  # elements through the foldable batch_norms

    def __torch_function__(self, func, types, args=(), kwargs=None):
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

    def _foldable(self, norm: dict, index: int, conv: dict) -> bool:
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
        self.folded = _Tracked()  # folded conv2d outputs -> their fold, or None once used
        self.skipped = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.conv2d:
            fold = self.plan.get(self.calls)
            self.calls += 1
            if fold is not None:
                return self._conv(fold, args, kwargs)
        elif func is F.batch_norm:
            norm = _arguments(_BATCH_NORM, args, kwargs)
            fold = self.folded.get(norm["input"])
            if isinstance(fold, _Fold):
                if norm["running_mean"] is not fold.mean:
                    raise _Mismatch("a folded convolution fed another BatchNorm")
                self.folded.add(norm["input"], False)  # its BatchNorm is done
                self.skipped += 1
                return norm["input"].view_as(norm["input"])  # a new tensor, the same values
        for tensor in _reads(func, args, kwargs):
            if self.folded.get(tensor) is not None:
                raise _Mismatch("a folded convolution's output was read by something else")
        return func(*args, **kwargs)

    def _conv(self, fold: _Fold, args: tuple, kwargs: dict) -> torch.Tensor:
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
    then stays off."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.plan: dict[int, _Fold] | None = None

    def __call__(self, x: torch.Tensor):
        if self.plan is None:
            with _Probe() as probe:
                out = self.model(x)
            self.plan = probe.plan()
            if probe.normalized < FOLD_MIN_ELEMENTS:  # too little to win back the mode's cost
                self.plan = {}
            log.debug("score-cam: %d of %d convolutions folded", len(self.plan), probe.calls)
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


register(
    MethodInfo(
        name="score-cam",
        order=30,
        kind="cam",
        summary="Feature maps weighted by the class score of the input masked by each of them.",
        formula="Σ_k softmax_k(y_c(X ⊙ norm(up(A_k)))) A_k",
        paper="Wang et al. 2020, arXiv:1910.01279",
        passes="1 forward + 1 per distinct non-constant channel (batched, no gradients)",
        compute=score_cam,
        needs=("layer",),
    )
)
