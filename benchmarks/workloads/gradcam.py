"""Target 3: Grad-CAM on ResNet-50 `layer4`, batch 8, against Captum, TorchCAM and grad-cam.

Each library is called the way its documentation shows, explainer built inside the timed call
(as cnnvis does its work inside one call). Gated: cnnvis / Captum LayerGradCam <= 1.05,
cnnvis / TorchCAM GradCAM <= 1.05, grad-cam GradCAM / cnnvis >= 2.5, and cnnvis <= 1.15x a
forward with autograd recording. Agreement on the same settings: ReLU'd Grad-CAM at layer
resolution (Captum, TorchCAM — TorchCAM min-max normalizes, which correlation ignores), and
ReLU'd then bilinearly upsampled (grad-cam, which resizes with OpenCV after normalizing).
"""

from __future__ import annotations

import torch
from captum.attr import LayerGradCam
from pytorch_grad_cam import GradCAM as JacobgilGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torchcam.methods import GradCAM as TorchCAMGradCAM

import cnnvis
from cnnvis.postprocess import upsample

from ..common import (
    Context,
    Row,
    agreement_row,
    correlation,
    forward_autograd,
    forward_no_grad,
    make_input,
    quiet,
    release_grads,
    speed_row,
    time_row,
    top1,
)
from . import register

LAYER = "layer4"
BATCH = 8


@register("gradcam-resnet50", "Grad-CAM, ResNet-50 layer4, batch 8, vs Captum/TorchCAM/grad-cam")
def gradcam_resnet50(ctx: Context) -> list[Row]:
    workload = "gradcam-resnet50"
    model = ctx.model("resnet50")
    x = make_input(BATCH, ctx.device)
    targets = top1(model, x)
    layer = dict(model.named_modules())[LAYER]

    def run_cnnvis():
        return cnnvis.explain(model, x, "grad-cam", layer=LAYER, target=targets)

    def run_captum():
        return LayerGradCam(model, layer).attribute(x, target=targets, relu_attributions=True)

    def run_torchcam():
        with TorchCAMGradCAM(model, LAYER) as extractor:
            scores = model(x)
            return extractor(class_idx=targets, scores=scores)[0]

    def run_jacobgil():
        with quiet(), JacobgilGradCAM(model=model, target_layers=[layer]) as cam:
            return cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets])

    candidates = {
        "cnnvis": run_cnnvis,
        "captum": run_captum,
        "torchcam": run_torchcam,
        "grad-cam": run_jacobgil,
        "forward-autograd": lambda: forward_autograd(model, x),
    }
    if not ctx.quick:  # for scale only
        candidates["forward-no-grad"] = lambda: forward_no_grad(model, x)
    timings = ctx.measure(workload, candidates)
    release_grads(model)
    rows = [time_row(workload, timings[n]) for n in candidates if n != "cnnvis"]
    rows += [
        speed_row(workload, timings, "cnnvis", "captum", "<=", 1.05),
        speed_row(workload, timings, "cnnvis", "torchcam", "<=", 1.05),
        speed_row(workload, timings, "grad-cam", "cnnvis", ">=", 2.5),
        speed_row(workload, timings, "cnnvis", "forward-autograd", "<=", 1.15),
    ]

    ours = run_cnnvis().layer_map.clamp(min=0)
    ours_up = upsample(ours, tuple(x.shape[-2:]))
    rows.append(agreement_row(workload, "cnnvis~captum", correlation(ours, run_captum())))
    rows.append(agreement_row(workload, "cnnvis~torchcam", correlation(ours, run_torchcam())))
    theirs = torch.from_numpy(run_jacobgil())
    release_grads(model)
    rows.append(
        agreement_row(workload, "cnnvis~grad-cam", correlation(ours_up, theirs), "at 224x224")
    )
    return rows
