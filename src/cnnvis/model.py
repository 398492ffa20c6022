"""A classifier together with what is needed to use it: its preprocessing and class names."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from PIL import Image
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
        return TF.to_dtype(t, torch.float32, scale=True)

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
    """An `nn.Module` classifier with its name, weights tag, preprocessing and class names.

    Every cnnvis function accepts either this or a bare `nn.Module` (which gets ImageNet
    preprocessing and, for 1000 outputs, ImageNet class names).
    """

    module: nn.Module
    name: str = "custom"
    weights: str | None = None
    preprocess: Preprocess = field(default_factory=Preprocess)
    categories: list[str] | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
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
