"""Canonizers: a copy of the model in the form LRP's rules assume, the user's model untouched.

`canonized_copy(model, x)` deep-copies the model (its parameters frozen: only the input is
differentiated) and merges every BatchNorm that directly follows a convolution into it
(W′ = W γ/σ, b′ = (b − μ) γ/σ + β; the pairs are found by one probe forward, as
`cnnvis.folding` finds them for its fast forwards), the BatchNorm then left as the identity.
A BatchNorm that follows no convolution (DenseNet's pre-activation ones) stays, with the pass
rule. Residual sums, concatenations, functional activations and gates need no rewriting of the
model: `functional.RelevanceMode` splits them where they are called.
"""

from __future__ import annotations

import copy
import itertools
import logging
import threading
import weakref
from collections.abc import Iterator

import torch
from torch import nn

from ...errors import Hint, MethodError
from ...folding import foldable_pairs
from ...forwards import guarded_forward
from ...model import is_scripted

log = logging.getLogger(__name__)


# what a canonized copy was made from: every module, and each weight's (data_ptr, _version)
_Signature = tuple[tuple[int, ...], tuple[tuple[int, int], ...]]
_COPIES: weakref.WeakKeyDictionary[nn.Module, tuple[_Signature, nn.Module]] = (
    weakref.WeakKeyDictionary()
)
_COPIES_LOCK = threading.Lock()


def canonized_copy(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """A frozen copy of `model` with its BatchNorms merged into the convolutions before them,
    made once and reused while the model's modules and weights stay the same (as
    `model.compute_model` keeps its float32 copies): the deep copy and the probe forward cost
    about a forward, which a repeated explanation then saves."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    signature = (
        tuple(id(m) for m in model.modules()),
        tuple((t.data_ptr(), t._version) for t in tensors),
    )
    with _COPIES_LOCK:
        cached = _COPIES.get(model)
        if cached is not None and cached[0] == signature:
            return cached[1]
        twin = _canonize(model, x)
        _COPIES[model] = (signature, twin)
        return twin


def _canonize(model: nn.Module, x: torch.Tensor) -> nn.Module:
    if is_scripted(model):
        raise MethodError(
            "lrp cannot run on a TorchScript model: its rules act on the layers of an "
            "nn.Module, and TorchScript runs outside Python; explain the original "
            "(non-scripted) nn.Module",
            hint=Hint("methods", "torchscript"),
        )
    with torch.inference_mode(False):  # the copy's tensors must be usable by autograd
        try:
            twin = copy.deepcopy(model)
        except Exception as error:  # a model holding something that cannot be copied
            raise MethodError(
                f"lrp works on a copy of the model (the model itself is never changed), and "
                f"this model cannot be copied: {error}"
            ) from error
        for p in twin.parameters():
            p.requires_grad_(False)
        merged = merge_batch_norms(twin, x)
    log.debug("lrp canonizer: %d BatchNorm(s) merged into their convolutions", merged)
    return twin


def merge_batch_norms(model: nn.Module, x: torch.Tensor) -> int:
    """Merge, in place, every BatchNorm that only normalizes a convolution's output into that
    convolution, the BatchNorm becoming the identity; the number merged."""
    with guarded_forward(model, grad=False):
        pairs = foldable_pairs(model, x.detach())
    convs = {id(m.weight): m for m in _modules(model, nn.Conv2d)}
    norms = {id(m.running_mean): m for m in _modules(model, nn.modules.batchnorm._BatchNorm)}
    targets: dict[int, list[tuple[nn.Module, nn.Module]]] = {}
    for fold in pairs:
        conv, norm = convs.get(id(fold.weight)), norms.get(id(fold.mean))
        if conv is not None and norm is not None:
            targets.setdefault(id(conv), []).append((conv, norm))
    done = 0
    with torch.no_grad():
        for pairs_of_conv in targets.values():
            if len({id(norm) for _, norm in pairs_of_conv}) != 1:
                continue  # one convolution feeding several BatchNorms: left as it is
            conv, norm = pairs_of_conv[0]
            fold = next(f for f in pairs if f.weight is conv.weight)
            conv.weight = nn.Parameter(fold.folded_weight, requires_grad=False)
            conv.bias = nn.Parameter(fold.folded_bias, requires_grad=False)
            _make_identity(norm)
            done += 1
    return done


def _modules(model: nn.Module, kind: type) -> Iterator[nn.Module]:
    """The modules of `model` of type `kind`."""
    return (m for m in model.modules() if isinstance(m, kind))


def _make_identity(module: nn.Module) -> None:
    """The BatchNorm as the identity in eval mode: mean 0, variance 1, ε 0, γ 1, β 0 (kept as a
    module, so a BatchNorm fused with its activation, as timm's BatchNormAct2d, still acts)."""
    norm = module
    if not isinstance(norm, nn.modules.batchnorm._BatchNorm):
        return
    if norm.running_mean is None or norm.running_var is None:
        return  # not foldable (no running statistics): never reached
    norm.running_mean.zero_()
    norm.running_var.fill_(1.0)
    norm.eps = 0.0
    if norm.weight is not None:
        norm.weight.fill_(1.0)
    if norm.bias is not None:
        norm.bias.zero_()
