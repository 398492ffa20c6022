"""Grad-CAM for one box of a Faster R-CNN (MobileNetV3-Large 320 FPN, random init, every box
kept), one 320x320 image, at the backbone's last block: cnnvis (`target="box:0"`) against one
forward + backward of the detector (the box score's gradient to the input) and against
pytorch-grad-cam's detection recipe (`FasterRCNNBoxScoreTarget` on the same layer and box).

Gated: cnnvis <= 1.3x forward + backward, grad-cam / cnnvis >= 2, and agreement of the maps
(ReLU'd, at 320x320: Pearson r >= 0.999).
"""

from __future__ import annotations

import torch
from pytorch_grad_cam import GradCAM as JacobgilGradCAM
from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

import cnnvis
from cnnvis.detection import BoxTarget
from cnnvis.postprocess import upsample

from ..common import (
    Context,
    Row,
    agreement_row,
    correlation,
    quiet,
    release_grads,
    speed_row,
    time_row,
)
from . import register

LAYER = "backbone.body.16"
SIZE = 320


@register(
    "detection-gradcam", "Grad-CAM of one Faster R-CNN box vs its forward+backward and grad-cam"
)
def detection_gradcam(ctx: Context) -> list[Row]:
    workload = "detection-gradcam"
    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, box_score_thresh=0.0
    )
    model = model.eval().to(ctx.device)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, SIZE, SIZE, generator=generator).to(ctx.device)
    with torch.no_grad():
        found = model(x)[0]
    box, label = found["boxes"][:1], int(found["labels"][0])
    layer = dict(model.named_modules())[LAYER]

    def run_cnnvis():
        return cnnvis.explain(model, x, "grad-cam", layer=LAYER, target="box:0")

    def run_forward_backward():
        leaf = x.clone().requires_grad_(True)
        score = BoxTarget(0).scores(model(leaf), {})
        return torch.autograd.grad(score.sum(), leaf)[0]

    def run_jacobgil():
        target = FasterRCNNBoxScoreTarget(labels=[label], bounding_boxes=box)
        with quiet(), JacobgilGradCAM(model=model, target_layers=[layer]) as cam:
            return cam(input_tensor=x, targets=[target])

    candidates = {
        "cnnvis": run_cnnvis,
        "forward-backward": run_forward_backward,
        "grad-cam": run_jacobgil,
    }
    timings = ctx.measure(workload, candidates)
    release_grads(model)
    note = f"{len(found['boxes'])} boxes kept (score threshold 0), box:0 label {label}"
    rows = [time_row(workload, timings[n]) for n in candidates if n != "cnnvis"]
    rows += [
        speed_row(workload, timings, "cnnvis", "forward-backward", "<=", 1.3, note=note),
        speed_row(workload, timings, "grad-cam", "cnnvis", ">=", 2.0),
    ]
    explained = run_cnnvis()
    assert explained.layer_map is not None
    ours = upsample(explained.layer_map.clamp(min=0), (SIZE, SIZE))
    theirs = torch.from_numpy(run_jacobgil())
    release_grads(model)
    rows.append(agreement_row(workload, "cnnvis~grad-cam", correlation(ours, theirs), "at 320x320"))
    return rows
