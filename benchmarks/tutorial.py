"""The tutorial's per-layer loop, rebuilt as the baseline that `cnnvis.sweep` replaces.

For every layer the tutorial built a fresh Grad-CAM extractor and a fresh guided-backprop object,
and each ran its own forward and its own `.backward()` (gradients into every parameter too):
2 x layers forward+backward passes. The guided-backprop object hooked the ReLU modules with the
deprecated `register_backward_hook` and never removed its hooks, so they pile up on the model:
after layer k every ReLU carries k stale hook pairs, and the *Grad-CAM* backward of every later
layer runs through them — its layer gradients are guided, not plain, a bug of the original that
`leak=True` reproduces (the benchmark reports it as an informational agreement row).

What differs from the published scripts, and why it does not flatter cnnvis:
- the CAM is upsampled bilinearly in float (the original min-max normalized, cast to uint8 and
  resized with PIL), so both libraries' maps can be compared; these steps cost milliseconds
  against seconds of passes, and leaving them out makes the loop faster, not slower;
- every `nn.ReLU` of the model is hooked (the original hooked `model.features` only, so VGG's
  two classifier ReLUs stayed plain), so the guided maps are the same method as cnnvis';
- the activation is cloned when stored (the original kept a reference that VGG's in-place ReLU
  then overwrote);
- the benchmark removes the leaked hooks when the loop ends, so the next workload gets a clean
  model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle


def _one_hot(output: torch.Tensor, targets: Sequence[int]) -> torch.Tensor:
    one_hot = torch.zeros_like(output)
    one_hot[torch.arange(len(targets)), torch.as_tensor(list(targets))] = 1.0
    return one_hot


class TutorialGradCam:
    """A hook-based Grad-CAM extractor for one layer that runs its own forward + backward."""

    def __init__(self, model: nn.Module, layer: nn.Module):
        self.model = model
        self.layer = layer
        self.activation: torch.Tensor | None = None
        self.gradient: torch.Tensor | None = None

    def _save_activation(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self.activation = output.detach().clone()
        output.register_hook(self._save_gradient)

    def _save_gradient(self, grad: torch.Tensor) -> None:
        self.gradient = grad

    def generate_cam(self, x: torch.Tensor, targets: Sequence[int]) -> torch.Tensor:
        """ReLU(sum_k mean_ij(dy/dA_k) A_k), upsampled to the input: (N, H, W)."""
        handle = self.layer.register_forward_hook(self._save_activation)
        try:
            output = self.model(x)
        finally:
            handle.remove()
        self.model.zero_grad()
        output.backward(gradient=_one_hot(output, targets), retain_graph=True)
        weights = self.gradient.mean(dim=(2, 3))
        cam = torch.einsum("nk,nkhw->nhw", weights, self.activation).clamp(min=0)
        return F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear")[:, 0]


class TutorialGuidedBackprop:
    """Guided backprop as the tutorial's class: hooks on every ReLU and on the first layer."""

    def __init__(self, model: nn.Module, first_layer: nn.Module, handles: list[RemovableHandle]):
        self.model = model
        self.gradients: torch.Tensor | None = None
        self.forward_relu_outputs: list[torch.Tensor] = []
        handles.append(first_layer.register_backward_hook(self._first_layer_hook))
        for module in model.modules():
            if isinstance(module, nn.ReLU):
                handles.append(module.register_forward_hook(self._relu_forward_hook))
                handles.append(module.register_backward_hook(self._relu_backward_hook))

    def _first_layer_hook(self, module: nn.Module, grad_in: tuple, grad_out: tuple) -> None:
        self.gradients = grad_in[0]

    def _relu_forward_hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self.forward_relu_outputs.append(output)

    def _relu_backward_hook(self, module: nn.Module, grad_in: tuple, grad_out: tuple) -> tuple:
        forward_output = self.forward_relu_outputs.pop()
        mask = (forward_output > 0).to(grad_in[0].dtype)
        return (mask * torch.clamp(grad_in[0], min=0.0),)

    def generate_gradients(self, x: torch.Tensor, targets: Sequence[int]) -> torch.Tensor:
        x = x.detach().clone().requires_grad_(True)
        output = self.model(x)
        self.model.zero_grad()
        output.backward(gradient=_one_hot(output, targets))
        return self.gradients


def first_layer(model: nn.Module) -> nn.Module:
    """The first convolution (the tutorial hooked `model.features[0]`)."""
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def guided_grad_cam_loop(
    model: nn.Module,
    x: torch.Tensor,
    targets: Sequence[int],
    layers: Sequence[nn.Module],
    *,
    leak: bool = True,
) -> list[torch.Tensor]:
    """Guided Grad-CAM at every layer the tutorial's way: fresh objects, 2 passes per layer.

    `leak=True` leaves each guided-backprop object's hooks on the model until the loop ends (as
    published); `leak=False` removes them after each layer (a clean reference for agreement).
    """
    handles: list[RemovableHandle] = []
    first = first_layer(model)
    maps = []
    try:
        for layer in layers:
            cam = TutorialGradCam(model, layer).generate_cam(x, targets)
            guided = TutorialGuidedBackprop(model, first, handles).generate_gradients(x, targets)
            maps.append((guided * cam[:, None]).detach())
            if not leak:
                _remove(handles)
    finally:
        _remove(handles)
        model.zero_grad(set_to_none=True)
    return maps


def _remove(handles: list[RemovableHandle]) -> None:
    for handle in handles:
        handle.remove()
    handles.clear()


class ModuleReLUDenseNet(nn.Module):
    """torchvision's DenseNet forward with its final functional `F.relu` as an `nn.ReLU` module,
    sharing the original's modules, so that module-hook guided backprop (the tutorial's, Captum's)
    sees every ReLU and computes the same method as cnnvis (which needs no such rewrite)."""

    def __init__(self, densenet: nn.Module):
        super().__init__()
        self.densenet = densenet
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.densenet.features(x))
        out = torch.flatten(F.adaptive_avg_pool2d(out, (1, 1)), 1)
        return self.densenet.classifier(out)
