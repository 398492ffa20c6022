"""`torchvision:NAME`: torchvision's classification, detection, segmentation and video models,
pretrained (downloaded into torch.hub's cache), random-init, or with a state dict from a file.
What differs between the tasks lives in torchvision_tasks.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError, unknown
from ..model import LoadedModel, Preprocess, Task
from .model_files import (
    build_and_load,
    existing_weights_file,
    guess_num_classes,
    read_state_dict,
)
from .names import looks_like_path, torchvision_tasks
from .torchvision_tasks import (
    build_kwargs,
    load_task_state,
    task_categories,
    task_preprocess,
)

# Aux heads only run in training mode; cnnvis builds these models without them.
_TV_AUX_PREFIXES = {"inception_v3": ("AuxLogits.",), "googlenet": ("aux1.", "aux2.")}


def load_torchvision(arch: str, weights: str | os.PathLike[str] | None) -> LoadedModel:
    """A torchvision model, pretrained, random, or from a state dict file, with its task."""
    arch = torchvision_arch(arch)
    task = torchvision_tasks()[arch]
    default = _default_weights(arch)
    enum_member, path = _weights_choice(arch, weights)
    if enum_member is not None:
        module = _pretrained(arch, enum_member)
        tag, info = enum_member.name, enum_member
    elif path is not None:
        module = _from_file(arch, task, path)
        tag, info = os.fspath(path), default
    else:
        module = _build(arch)
        tag, info = None, default
    categories = (
        _categories(info, module)
        if task == "classification"
        else task_categories(task, info, module)
    )
    return LoadedModel(
        module=module,
        name=f"torchvision:{arch}",
        weights=tag,
        preprocess=task_preprocess(task, info, module),
        categories=categories,
        random_weights=enum_member is None and path is None,
        task=task,
    )


def torchvision_arch(arch: str) -> str:
    """Validate a torchvision model name (case-insensitive)."""
    names = torchvision_tasks()
    if arch in names:
        return arch
    if arch.lower() in names:
        return arch.lower()
    choices = [f"torchvision:{n}" for n in names]
    raise ModelError(unknown("torchvision model", f"torchvision:{arch}", choices))


def torchvision_preprocess(arch: str) -> Preprocess:
    """The preprocessing of a torchvision model's DEFAULT weights (no download).

    A detector's size is read from its own transform, so a detector is built (random init)."""
    arch = torchvision_arch(arch)
    task = torchvision_tasks()[arch]
    module = _build(arch) if task == "detection" else None
    return task_preprocess(task, _default_weights(arch), module)


def _default_weights(arch: str) -> Any:
    """The DEFAULT weights enum member of a torchvision model, or None if it has none."""
    from torchvision.models import get_model_weights

    try:
        return get_model_weights(arch).DEFAULT
    except (ValueError, AttributeError, KeyError):
        return None


def _categories(weights: Any, module: nn.Module) -> list[str] | None:
    """Class names from the weights' meta, if the module's output size matches."""
    if weights is None:
        return None
    names = list(weights.meta.get("categories") or [])
    outputs = guess_num_classes(module)
    if not names or (outputs is not None and outputs != len(names)):
        return None
    return names


def _weights_choice(arch: str, weights: str | os.PathLike[str] | None) -> tuple[Any, Path | None]:
    """Resolve `weights` to (enum member, None), (None, file path) or (None, None)."""
    if weights is None:
        return None, None
    if isinstance(weights, os.PathLike) or os.path.isfile(os.fspath(weights)):
        return None, existing_weights_file(weights, f"torchvision:{arch}")
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch)
    members = {k.upper(): v for k, v in enum.__members__.items()}
    key = weights.strip().rpartition(".")[2].upper()  # also "ResNet50_Weights.IMAGENET1K_V2"
    if key in members:
        return members[key], None
    if looks_like_path(weights):
        return None, existing_weights_file(weights, f"torchvision:{arch}")
    raise ModelError(
        unknown(
            f"weights for torchvision:{arch}",
            weights,
            list(enum.__members__),
            hint="or None for random init, or a path to a state dict",
        )
    )


def _build_kwargs(arch: str) -> dict[str, Any]:
    """Builder arguments for a random-init model shaped like the pretrained one (and, for
    detection and segmentation, without the download of backbone weights)."""
    if arch in _TV_AUX_PREFIXES:
        return {"aux_logits": False, "init_weights": True, "transform_input": True}
    return build_kwargs(torchvision_tasks()[arch])


def _build(arch: str, **kwargs: Any) -> nn.Module:
    """A random-init torchvision model."""
    from torchvision.models import get_model

    return get_model(arch, weights=None, **{**_build_kwargs(arch), **kwargs})


def _pretrained(arch: str, member: Any) -> nn.Module:
    """A pretrained torchvision model; downloads into torch.hub's cache on first use."""
    from torchvision.models import get_model

    try:
        module = get_model(arch, weights=member)
    except (OSError, RuntimeError) as e:  # URLError is an OSError
        cached = _checkpoint(member)
        raise ModelError(
            f"could not get the pretrained weights {member.name} of torchvision:{arch} ({e}); "
            f"place the file at {cached}, or pass weights=PATH to a state dict, or weights=None "
            "for random init"
        ) from e
    if arch == "inception_v3":  # torchvision keeps the training-only aux head by default
        module.aux_logits = False
        module.AuxLogits = None
    return module


def _from_file(arch: str, task: Task, path: Path) -> nn.Module:
    """A torchvision architecture with a state dict from a file (a classifier's num_classes
    inferred; other tasks keep their default classes)."""
    if task in ("detection", "segmentation"):
        module = _build(arch)
        load_task_state(module, read_state_dict(path), path)
        return module
    aux = _TV_AUX_PREFIXES.get(arch, ())
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(aux)}
    extra = {"init_weights": False} if aux else {}
    return build_and_load(lambda **kw: _build(arch, **extra, **kw), state, path)


def _checkpoint(member: Any) -> Path:
    """Where torch.hub keeps a torchvision weights file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(member.url)


def torchvision_entries() -> list[dict[str, Any]]:
    """One `available_models` entry per torchvision model, with its task."""
    entries = []
    for arch, task in torchvision_tasks().items():
        member = _default_weights(arch)
        local = _checkpoint(member).is_file() if member is not None else False
        entries.append(
            {
                "source": "torchvision",
                "name": f"torchvision:{arch}",
                "weights": member.name if member is not None else None,
                "local": local,
                "task": task,
            }
        )
    return entries
