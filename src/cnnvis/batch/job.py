"""The settings of a batch run, and the hash that says whether a stored result is still valid.

A result is reused on a later run when the image's content hash (sha256 of its bytes) and the
settings hash of its (method, layer) are the same. The settings hash covers the model's weights
(a fingerprint of every tensor of the state dict), its preprocessing, the target rule, the logits
selector, the method, the layer and the method's parameters.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import torch

from ..model import LoadedModel

FORMAT = 1  # bump when the stored maps or statistics change meaning


@dataclass(frozen=True)
class MapKey:
    """One map per image: a method at a layer (None for pixel-space methods)."""

    method: str
    layer: str | None

    @property
    def name(self) -> str:
        """'grad-cam@layer4' or 'gradient': the map's file name and column prefix."""
        return self.method if self.layer is None else f"{self.method}@{self.layer}"


@dataclass
class Job:
    """Everything the engines need to turn a batch of decoded images into index rows and maps."""

    keys: list[MapKey]
    params: dict[str, dict[str, Any]]
    target: str  # "top1", "label", an index or a class name, as given
    output: str | None = None
    png: bool = False
    cmap: str = "jet"
    max_pixels: int | None = None  # larger images are refused before decoding
    settings: dict[MapKey, str] = field(default_factory=dict)  # key -> settings hash
    fingerprint: str = ""  # the model's weights (model_fingerprint)

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(k.method for k in self.keys))

    @property
    def layers(self) -> list[str]:
        return list(dict.fromkeys(k.layer for k in self.keys if k.layer is not None))


def model_fingerprint(model: LoadedModel) -> str:
    """sha256 over the names, shapes, dtypes and bytes of every tensor in the state dict."""
    digest = hashlib.sha256()
    for name, tensor in model.module.state_dict().items():
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(tensor.shape)}:{t.dtype};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def settings_hashes(
    model: LoadedModel,
    keys: list[MapKey],
    params: dict[str, dict[str, Any]],
    target: str,
    output,
    fingerprint: str | None = None,
) -> dict[MapKey, str]:
    """The settings hash (16 hex digits) of each map key (`fingerprint`: when known already)."""
    p = model.preprocess
    common = {
        "format": FORMAT,
        "model": model.name,
        "fingerprint": fingerprint or model_fingerprint(model),
        "preprocess": [p.resize_size, p.crop_size, list(p.mean), list(p.std), str(p.interpolation)],
        "target": str(target),
        "output": output,
    }
    hashes = {}
    for key in keys:
        blob = {
            **common,
            "method": key.method,
            "layer": key.layer,
            "params": params.get(key.method),
        }
        text = json.dumps(blob, sort_keys=True, default=str)
        hashes[key] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return hashes
