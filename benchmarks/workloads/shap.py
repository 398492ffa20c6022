"""The SHAP family on ResNet-18 against Captum: KernelSHAP with 1000 samples (KernelShap) and
DeepLiftShap over 8 baselines (DeepLiftShap), one image, the same settings both sides.

KernelSHAP: a grid of 16x16-pixel cells as the feature mask (the random input has no
superpixels), baseline 0, 64 inputs per forward, the same draws (cnnvis reproduces Captum's
sampler from the seed Captum's global generator gets). Gate: cnnvis / Captum <= 0.8.
DeepLiftShap: eight seeded noise baselines; the model's max pools as average pools and its
reused ReLUs split for Captum (Captum's DeepLift cannot take a ReLU called twice, and its
max-pool rule loses completeness where windows overlap; cnnvis runs the same weights without
either change). Gate: cnnvis / Captum <= 1.0. Quick runs use 64x64 inputs, full runs 224x224.
Both gate agreement (min Pearson r >= 0.999).
"""

from __future__ import annotations

import copy
import types

import torch
import torch.nn.functional as F
import torchvision
from captum.attr import DeepLiftShap, KernelShap
from torch import nn

import cnnvis

from ..common import Context, Row, agreement_row, correlation, make_input, quiet, speed_row
from . import register

SAMPLES = 1000
BATCH = 64
CELL = 16
BASELINES = 8
SEED = 0


def _input(ctx: Context) -> torch.Tensor:
    x = make_input(1, ctx.device)
    return F.interpolate(x, size=64, mode="bilinear") if ctx.quick else x


@register("kernel-shap-resnet18", "KernelSHAP, ResNet-18, 1000 samples, grid cells, vs Captum")
def kernel_shap_resnet18(ctx: Context) -> list[Row]:
    workload = "kernel-shap-resnet18"
    model = ctx.model("resnet18")
    x = _input(ctx)
    side = x.shape[-1]
    target = int(model(x).argmax())
    cells = torch.arange(side) // CELL
    mask = (cells[:, None] * ((side + CELL - 1) // CELL) + cells[None, :]).to(x.device)

    def run_cnnvis() -> torch.Tensor:
        return cnnvis.explain(
            model, x, "kernel-shap", target=target, features=mask, samples=SAMPLES,
            batch_size=BATCH, seed=SEED,
        ).map  # fmt: skip

    def run_captum() -> torch.Tensor:
        torch.manual_seed(SEED)
        with quiet():
            return KernelShap(model).attribute(
                x, target=target, feature_mask=mask[None, None], n_samples=SAMPLES,
                perturbations_per_eval=BATCH,
            )  # fmt: skip

    timings = ctx.measure(workload, {"cnnvis": run_cnnvis, "captum": run_captum}, repeats=1)
    return [
        speed_row(workload, timings, "cnnvis", "captum", "<=", 0.8),
        agreement_row(workload, "cnnvis~captum", correlation(run_cnnvis(), run_captum())),
    ]


def _avg_pooled(model: nn.Module) -> nn.Module:
    twin = copy.deepcopy(model)
    twin.maxpool = nn.AvgPool2d(3, 2, 1, count_include_pad=False)
    return twin


def _block_forward(self: torchvision.models.resnet.BasicBlock, x: torch.Tensor) -> torch.Tensor:
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    return self.relu_out(self.bn2(self.conv2(out)) + identity)


def _for_captum(model: nn.Module) -> nn.Module:
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
        if isinstance(module, torchvision.models.resnet.BasicBlock):
            module.relu_out = nn.ReLU()
            module.forward = types.MethodType(_block_forward, module)
    return twin


@register("deeplift-shap-resnet18", "DeepLiftShap, ResNet-18, 8 baselines, vs Captum")
def deeplift_shap_resnet18(ctx: Context) -> list[Row]:
    workload = "deeplift-shap-resnet18"
    model = _avg_pooled(ctx.model("resnet18"))
    theirs = _for_captum(model)
    x = _input(ctx)
    generator = torch.Generator().manual_seed(SEED)
    baselines = torch.randn(BASELINES, *x.shape[1:], generator=generator).to(x.device) * 0.5
    target = int(model(x).argmax())

    def run_cnnvis() -> torch.Tensor:
        return cnnvis.explain(
            model, x, "deeplift-shap", target=target, baselines=baselines, batch_size=BASELINES
        ).map

    def run_captum() -> torch.Tensor:
        with quiet():
            return DeepLiftShap(theirs).attribute(x, baselines, target=target).detach()

    timings = ctx.measure(workload, {"cnnvis": run_cnnvis, "captum": run_captum})
    return [
        speed_row(workload, timings, "cnnvis", "captum", "<=", 1.0),
        agreement_row(workload, "cnnvis~captum", correlation(run_cnnvis(), run_captum())),
    ]
