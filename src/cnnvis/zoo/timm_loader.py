"""`timm:NAME`: timm's models, pretrained (through timm's own download), random-init, with a
pretrained tag (`timm:NAME` with weights "TAG"), or with a state dict from a file."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from ..errors import ModelError, unknown
from ..model import LoadedModel, imagenet_categories
from .model_files import build_and_load, existing_weights_file, read_state_dict
from .names import looks_like_path, timm_names
from .preprocessing import timm_preprocess


def load_timm(arch: str, weights: str | os.PathLike[str] | None) -> LoadedModel:
    """A timm model, pretrained (via timm's own download), random, or from a state dict."""
    import timm

    check_timm_arch(arch)
    if weights is None:
        module, tag = _create(arch, pretrained=False), None
    elif isinstance(weights, str) and weights.strip().upper() == "DEFAULT":
        module, tag = _create(arch, pretrained=True), "DEFAULT"
    elif isinstance(weights, os.PathLike) or looks_like_path(weights):
        path = existing_weights_file(weights, f"timm:{arch}")
        state = read_state_dict(path)
        module = build_and_load(lambda **kw: _create(arch, False, **kw), state, path)
        tag = os.fspath(path)
    else:
        full = f"{arch.partition('.')[0]}.{weights.strip()}"
        if full not in timm.list_pretrained():
            choices = [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*")]
            raise ModelError(unknown(f"pretrained tag for timm:{arch}", weights, choices))
        module, tag = _create(full, pretrained=True), weights.strip()
    num_classes = getattr(module, "num_classes", None)
    return LoadedModel(
        module=module,
        name=f"timm:{arch}",
        weights=tag,
        preprocess=timm_preprocess(module),
        categories=imagenet_categories() if num_classes == 1000 else None,
        random_weights=weights is None,
    )


def check_timm_arch(arch: str) -> None:
    """Raise a ModelError with suggestions if timm does not know `arch`."""
    import timm

    if arch.startswith(("hf-hub:", "hf_hub:")) or timm.is_model(arch.partition(".")[0]):
        return
    raise ModelError(unknown("timm model", f"timm:{arch}", [f"timm:{n}" for n in timm_names()]))


def _create(arch: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    """timm.create_model with download failures turned into a ModelError."""
    import timm

    try:
        return timm.create_model(arch, pretrained=pretrained, **kwargs)
    except (OSError, RuntimeError) as e:
        if not pretrained:
            raise
        raise ModelError(
            f"could not get the pretrained weights of timm:{arch} ({e}); pass weights=PATH to a "
            "state dict, or weights=None for random init"
        ) from e


def timm_entries() -> list[dict[str, Any]]:
    """One `available_models` entry per timm model; whether weights are cached is unknown."""
    return [
        {
            "source": "timm",
            "name": f"timm:{n}",
            "weights": None,
            "local": None,
            "task": "classification",
        }
        for n in timm_names()
    ]
