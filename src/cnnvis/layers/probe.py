"""Layers as a forward pass sees them: list them with output shapes, choose the default layer for
CAM methods, pick the layers of a sweep."""

from __future__ import annotations

import fnmatch
import logging
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from ..errors import Hint, LayerError
from ..forwards import device_dtype, first_tensor, guarded_forward
from ..model import compute_model, is_scripted
from .tokens import is_grid, patch_size, token_grid

log = logging.getLogger(__name__)

_POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_PASS_THROUGH = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.Flatten)


@dataclass(frozen=True)
class LayerInfo:
    """One module of a model: its dotted name, type, output shape (batch 1) and roles.

    `same_as`: the enclosing module whose output this module's output is (the activation of a
    conv-norm-act unit, a Sequential's last layer): a map there is the enclosing one's."""

    name: str
    type: str
    output_shape: tuple[int, ...] | None
    calls: int = 1
    default: bool = False
    sweep: bool = False
    same_as: str | None = None

    @property
    def spatial(self) -> bool:
        """A feature map (N, C, H, W) with H*W > 1, or transformer tokens (N, T, C) with T > 1
        (CAM methods lay tokens out on the patch grid)."""
        s = self.output_shape
        if s is None:
            return False
        return (len(s) == 4 and s[2] * s[3] > 1) or (len(s) == 3 and s[1] > 1)


def _is_pooling(module: nn.Module) -> bool:
    return isinstance(module, _POOLING) or "Pool" in type(module).__name__


def _is_pass_through(module: nn.Module) -> bool:
    return isinstance(module, _PASS_THROUGH) or type(module).__name__ == "DropPath"


_PROBES: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, ...], list[LayerInfo]]] = (
    weakref.WeakKeyDictionary()
)
_PROBE_LOCK = threading.Lock()


def probe(model: nn.Module, input_shape: Sequence[int] = (1, 3, 224, 224)) -> list[LayerInfo]:
    """Run one no-grad forward on zeros and describe every module in the order it finished.

    Cached per model and input shape. Modules that did not run are listed last without a shape.
    """
    key = tuple(input_shape)
    with _PROBE_LOCK:
        cached = _PROBES.get(model, {}).get(key)
    if cached is not None:
        return cached
    infos = _run_probe(model, key)
    with _PROBE_LOCK:
        _PROBES.setdefault(model, {})[key] = infos
    return infos


def _run_probe(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerInfo]:
    model = compute_model(model)
    names = {m: n for n, m in model.named_modules() if n}
    order: list[str] = []
    outputs: dict[str, torch.Tensor | None] = {}
    versions: dict[str, int] = {}  # each output's in-place version counter when it was made
    calls: dict[str, int] = {}

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        name = names[module]
        tensor, _ = first_tensor(output)
        if name in calls:
            order.remove(name)
        calls[name] = calls.get(name, 0) + 1
        order.append(name)
        outputs[name] = tensor
        versions[name] = tensor._version if tensor is not None else -1

    device, dtype = device_dtype(model)
    # TorchScript modules take no Python hooks: they are listed without an output shape
    hooks = [(m, hook) for m in names if not is_scripted(m)]
    with guarded_forward(model, hooks=hooks, grad=False):
        model(torch.zeros(input_shape, device=device, dtype=dtype))
    size = (input_shape[-2], input_shape[-1])
    default = _choose_default(model, order, outputs, size, rows=input_shape[0], calls=calls)
    spine = set(_spine(model))
    modules = dict(model.named_modules())
    infos = []
    for name in order:
        t = outputs[name]
        shape = tuple(t.shape) if t is not None else None
        info = LayerInfo(name, type(modules[name]).__name__, shape, calls[name], name == default)
        info = replace(info, same_as=_enclosing_with_output(name, outputs, versions))
        infos.append(_with_sweep(info, name in spine and not _is_pooling_head(modules[name])))
    ran = set(order)
    infos += [LayerInfo(n, type(m).__name__, None, 0) for m, n in names.items() if n not in ran]
    return infos


def _enclosing_with_output(
    name: str, outputs: dict[str, torch.Tensor | None], versions: dict[str, int]
) -> str | None:
    """The module that directly encloses `name` when it returns `name`'s very output (the same
    tensor, not changed in place in between: a norm before an in-place ReLU is not its unit's
    output)."""
    parent = name.rpartition(".")[0]
    mine = outputs.get(name)
    if not parent or mine is None or outputs.get(parent) is not mine:
        return None
    return parent if versions.get(parent) == versions.get(name) else None


def _with_sweep(info: LayerInfo, in_spine: bool) -> LayerInfo:
    if in_spine and info.spatial:
        return replace(info, sweep=True)
    return info


def _is_pooling_head(module: nn.Module) -> bool:
    return isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d) or _is_pass_through(
        module
    )


def _in_shared_head(name: str, modules: dict[str, nn.Module], calls: dict[str, int]) -> bool:
    """Whether `name`, or a module it sits in, has weights and ran more than once: a head
    applied to each level of a feature pyramid (an RPN head), whose hooks keep only the last
    level. A parameterless module reused on its own (ResNet's ReLU) is not one."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        module = modules.get(prefix)
        if module is None or calls.get(prefix, 1) <= 1:
            continue
        if next(module.parameters(), None) is not None:
            return True
    return False


def _choose_default(
    model: nn.Module,
    order: list[str],
    outputs: dict[str, torch.Tensor | None],
    size: tuple[int, int] = (224, 224),
    rows: int = 1,
    calls: dict[str, int] | None = None,
) -> str | None:
    """The last module to finish with a spatial (N, C, H>1 or W>1) output that is not a pooling
    step (nor a container whose output *is* a pooling step's output) and has one row per image
    (not a detector's per-proposal features, e.g. Faster R-CNN's RoI pooling) and, if it has
    weights, from one call (not a head shared by the levels of a feature pyramid, which keeps
    only its last; a reused ReLU keeps its last call, as before); for
    transformers, the pre-attention norm of the last block (see `_transformer_default`)."""
    modules = dict(model.named_modules())
    transformer = _transformer_default(model, order, outputs, size)
    if transformer is not None:
        return transformer
    pooled = {
        t.data_ptr()
        for n, t in outputs.items()
        if t is not None and _is_pooling(modules[n]) and t.numel()
    }
    for name in reversed(order):
        t = outputs[name]
        if t is None or t.dim() != 4 or t.shape[2] * t.shape[3] <= 1 or t.shape[0] != rows:
            continue
        module = modules[name]
        if calls is not None and _in_shared_head(name, modules, calls):
            continue  # a head shared by a pyramid's levels; a reused ReLU stays a candidate
        if _is_pooling(module) or _is_pass_through(module) or t.data_ptr() in pooled:
            continue
        return name
    return None


def _is_attention(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or type(module).__name__.endswith("Attention")


def _transformer_default(
    model: nn.Module,
    order: list[str],
    outputs: dict[str, torch.Tensor | None],
    size: tuple[int, int],
) -> str | None:
    """The last transformer block's pre-attention norm (`blocks.11.norm1` in timm's ViT/DeiT,
    `encoder.layers.encoder_layer_11.ln_1` in torchvision's, `features.7.1.norm1` in its Swin),
    or None for a model without attention blocks on tokens laid out as a patch grid (tokens
    (N, k + h*w, C) or channels-last (N, h, w, C); MaxViT's window partitions are not) or
    whose last block has no norm before its attention (post-norm blocks such as Swin V2's):
    those keep the convolutional rule.

    Not the last block's output: with a class-token head only the class token's row of it
    reaches the logits, so every patch token's gradient there is exactly zero (blank maps).
    The norm's output feeds the last attention, through which every patch token reaches the
    class token (non-zero gradients for class-token and global-pool heads alike), and it is
    normalized per token, so the few high-norm tokens and channels of a trained ViT's residual
    stream (Darcet et al. 2024, Sun et al. 2024) do not swamp the weighted sum as they would
    at the block's input. pytorch-grad-cam recommends the same layer for ViT, DeiT and Swin.
    """
    modules = dict(model.named_modules())
    position = {name: i for i, name in enumerate(order)}
    attention = [n for n in order if _is_attention(modules[n])]
    if not attention:
        return None
    last = attention[-1]
    block = last.rpartition(".")[0]
    for name in reversed(order[: position[last]]):
        if not name.startswith(f"{block}.") or name.startswith(f"{last}."):
            continue
        t = outputs[name]
        if t is None or "LayerNorm" not in type(modules[name]).__name__:
            continue
        if t.dim() == 4 and is_grid(t.shape[1], t.shape[2], size):
            return name
        if t.dim() == 3:
            try:
                token_grid(t.shape[1], size, patch_size(model))
            except LayerError:
                return None
            return name
    return None


def _spine(model: nn.Module, prefix: str = "") -> list[str]:
    """Modules along the network's main path: plain `nn.Sequential` containers are opened up,
    everything else (blocks, conv-norm-act units, convolutions, activations) is kept whole."""
    names = []
    for child_name, child in model.named_children():
        name = f"{prefix}{child_name}"
        if type(child) is nn.Sequential and len(child):
            names += _spine(child, name + ".")
        else:
            names.append(name)
    return names


def list_layers(
    model: nn.Module, input_shape: Sequence[int] = (1, 3, 224, 224), pattern: str | None = None
) -> list[LayerInfo]:
    """Every module that runs in a forward pass, in order, with its output shape; the default
    layer for CAM methods is marked `default=True`, the layers of a full sweep `sweep=True`."""
    infos = probe(model, input_shape)
    if pattern:
        infos = [i for i in infos if fnmatch.fnmatch(i.name, pattern)]
    return infos


def default_layer(model: nn.Module, input_shape: Sequence[int] = (1, 3, 224, 224)) -> str:
    """The last layer with a spatial output (see `_choose_default`); logged when chosen."""
    for info in probe(model, input_shape):
        if info.default:
            return info.name
    if is_scripted(compute_model(model)):
        raise LayerError(
            "this is a TorchScript model: it runs outside Python, so no layer's output can be "
            "recorded and CAM methods cannot run",
            hint=Hint("methods", "torchscript"),
        )
    raise LayerError(
        "the model has no layer with a spatial (N, C, H, W) output, so CAM methods cannot run "
        "on it; use a pixel method such as 'gradient' or 'guided-backprop'"
    )
