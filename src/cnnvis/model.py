"""A classifier together with what is needed to use it: its preprocessing and class names."""

from __future__ import annotations

import copy
import itertools
import logging
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from PIL import Image
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Task = Literal["classification", "detection", "segmentation", "video"]
"""What a model's output is: class logits (N, K); detections (a list of dicts with boxes,
scores, labels); per-pixel class logits (N, K, H, W); class logits of a clip (N, C, T, H, W)."""
TASKS: tuple[Task, ...] = ("classification", "detection", "segmentation", "video")


@dataclass(frozen=True)
class Preprocess:
    """Resize the short side, center-crop, scale to [0, 1], then normalize with mean/std.

    `to_display` stops before normalization, so maps can be drawn over exactly the pixels the
    model saw; `normalize` finishes the job; calling the object does both.
    """

    resize_size: int = 256
    crop_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: InterpolationMode = InterpolationMode.BILINEAR

    def to_display(self, image: Image.Image) -> torch.Tensor:
        """PIL RGB image -> float tensor (3, crop, crop) in [0, 1]."""
        t = TF.pil_to_tensor(image)
        t = TF.resize(t, [self.resize_size], interpolation=self.interpolation, antialias=True)
        t = TF.center_crop(t, [self.crop_size, self.crop_size])
        display: torch.Tensor = TF.to_dtype(t, torch.float32, scale=True)  # untyped torchvision
        return display

    def normalize(self, display: torch.Tensor) -> torch.Tensor:
        """[0, 1] image tensor (..., 3, H, W) -> model input."""
        mean = torch.tensor(self.mean, dtype=display.dtype, device=display.device)
        std = torch.tensor(self.std, dtype=display.dtype, device=display.device)
        return (display - mean[:, None, None]) / std[:, None, None]

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model input -> [0, 1] image tensor, clamped (the inverse of `normalize`)."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device)
        return (x * std[:, None, None] + mean[:, None, None]).clamp(0, 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.normalize(self.to_display(image))


@dataclass
class LoadedModel:
    """An `nn.Module` with its name, weights tag, preprocessing, class names and task.

    Every cnnvis function accepts either this or a bare `nn.Module` (which gets ImageNet
    preprocessing and, for 1000 outputs, ImageNet class names). `task` says what the output
    is (see `Task`); a bare module counts as a classifier.
    """

    module: nn.Module
    name: str = "custom"
    weights: str | None = None
    preprocess: Preprocess = field(default_factory=Preprocess)
    categories: list[str] | None = None
    random_weights: bool = False  # random init (weights=None): figures say so in their titles
    task: Task = "classification"

    def __call__(self, x: torch.Tensor) -> Any:
        """The module's output: logits, or whatever else the model returns (a tuple, a dict)."""
        return self.module(x)

    @property
    def device(self) -> torch.device:
        for p in self.module.parameters():
            return p.device
        for b in self.module.buffers():
            return b.device
        return torch.device("cpu")

    def class_name(self, index: int) -> str:
        if self.categories is not None and 0 <= index < len(self.categories):
            return self.categories[index]
        return f"class {index}"

    def to(self, device: str | torch.device) -> LoadedModel:
        self.module.to(device)
        return self


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names that ship with torchvision (no download)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def as_loaded(model: nn.Module | LoadedModel) -> LoadedModel:
    """Wrap a bare module with defaults; pass a LoadedModel through."""
    if isinstance(model, LoadedModel):
        return model
    if not isinstance(model, nn.Module):
        from .errors import ModelError

        raise ModelError(
            f"expected a torch.nn.Module or cnnvis.LoadedModel, got {type(model).__name__}; "
            "load one with cnnvis.load_model(NAME)"
        )
    return LoadedModel(module=model, name=type(model).__name__)


# ----------------------------------------------------------------------------- what runs


HALF_DTYPES = (torch.float16, torch.bfloat16)
_WRAPPERS = (nn.DataParallel, nn.parallel.DistributedDataParallel)
# what a float32 twin was copied from: each weight's (data_ptr, _version, dtype, device, shape)
_Signature = tuple[tuple[int, int, torch.dtype, torch.device, torch.Size], ...]
_TWINS: weakref.WeakKeyDictionary[nn.Module, tuple[_Signature, nn.Module]] = (
    weakref.WeakKeyDictionary()
)
_TWINS_LOCK = threading.Lock()


def compute_model(model: nn.Module) -> nn.Module:
    """The module cnnvis runs in place of `model`, which itself is never modified:

    - `nn.DataParallel` / `DistributedDataParallel`: the wrapped `.module` (hooks on the
      wrapper's per-GPU replicas would never fire); its layer names lose the `module.` prefix,
      and `resolve_layer` accepts them with it too.
    - weights in float16 / bfloat16: a float32 copy, made once and reused while the weights
      stay the same, so that gradients and maps are computed in float32 (half-precision
      gradients underflow, and CPUs lack some half kernels).
    - anything else: `model` itself.
    """
    model = unwrap(model)
    tensors = list(itertools.chain(model.parameters(), model.buffers()))
    if any(t.is_inference() for t in tensors):
        from .errors import ModelError

        raise ModelError(
            "the model's weights were created under torch.inference_mode(), so no gradient can "
            "flow through them; load or build the model outside inference mode"
        )
    half = half_precision(model)
    if not half:
        return model
    signature = tuple((t.data_ptr(), t._version, t.dtype, t.device, t.shape) for t in tensors)
    with _TWINS_LOCK:
        cached = _TWINS.get(model)
        if cached is not None and cached[0] == signature:
            return cached[1]
        twin = _float32_copy(model, half)
        _TWINS[model] = (signature, twin)
        return twin


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside `nn.DataParallel` / `DistributedDataParallel` wrappers (else `model`)."""
    while isinstance(model, _WRAPPERS):
        model = model.module
    return model


def half_precision(model: nn.Module) -> list[str]:
    """The half-precision dtypes among the model's weights and buffers, e.g. ["bfloat16"]."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    return sorted({str(t.dtype).removeprefix("torch.") for t in tensors if t.dtype in HALF_DTYPES})


def _float32_copy(model: nn.Module, half: list[str]) -> nn.Module:
    from .errors import ModelError

    log.info("the model has %s weights; cnnvis explains a float32 copy of it", "/".join(half))
    try:
        twin = copy.deepcopy(model).float()
    except Exception as e:
        raise ModelError(
            f"cannot make a float32 copy of this {'/'.join(half)} model to explain "
            f"({type(e).__name__}: {e}); pass model.float() instead"
        ) from e
    for p in twin.parameters():
        p.grad = None
    return twin


def is_scripted(module: nn.Module) -> bool:
    """Whether `module` is TorchScript (`torch.jit.script` / `trace` / `load`): its forward runs
    outside Python, so forward hooks and activation rules cannot reach inside it."""
    return isinstance(module, torch.jit.ScriptModule)
