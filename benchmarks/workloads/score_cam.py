"""Score-CAM on ResNet-18 `layer4` (512 channels), one 224x224 image, masked inputs in batches
of 32: cnnvis against TorchCAM `ScoreCAM` and pytorch-grad-cam `ScoreCAM`.

Gated: the faster peer / cnnvis >= 1.5 (wall clock; the same ratio of process CPU seconds is
shown beside it, informational), and agreement >= 0.999: cnnvis' ReLU'd map at the
layer's resolution vs TorchCAM's (which normalises each mask before upsampling it: the same up to
rounding at 32x upsampling), and the ReLU'd map upsampled to 224x224 vs pytorch-grad-cam's
output, both for cnnvis' default masks and for `align_corners=True`, pytorch-grad-cam's own
upsampling (like with like). Full runs only (each call is hundreds of forwards).
"""

from __future__ import annotations

import contextlib
import io

import torch
from pytorch_grad_cam import ScoreCAM as JacobgilScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torchcam.methods import ScoreCAM as TorchCAMScoreCAM

import cnnvis
from cnnvis.capture import record
from cnnvis.methods.score_cam import mask_plan
from cnnvis.postprocess import upsample

from ..common import (
    Context,
    Row,
    Target,
    agreement_row,
    correlation,
    cpu_time_row,
    forward_no_grad,
    make_input,
    quiet,
    time_row,
    top1,
)
from . import register

LAYER = "layer4"
BATCH = 32
SPEEDUP = 1.5


@register(
    "score-cam-resnet18",
    "Score-CAM, ResNet-18 layer4, 1 image, batch 32, vs TorchCAM / grad-cam",
    quick=False,
)
def score_cam_resnet18(ctx: Context) -> list[Row]:
    workload = "score-cam-resnet18"
    model = ctx.model("resnet18")
    x = make_input(1, ctx.device)
    targets = top1(model, x)
    layer = dict(model.named_modules())[LAYER]

    def run_cnnvis(**params):
        return cnnvis.explain(
            model, x, "score-cam", layer=LAYER, target=targets, batch_size=BATCH, **params
        )

    def run_torchcam():
        with TorchCAMScoreCAM(model, LAYER, batch_size=BATCH) as extractor:
            with torch.inference_mode():
                model(x)
            return extractor(class_idx=targets[0], normalized=False)[0]

    def run_jacobgil():
        with (
            quiet(),
            contextlib.redirect_stderr(io.StringIO()),  # its per-batch tqdm progress bars
            JacobgilScoreCAM(model=model, target_layers=[layer]) as cam,
        ):
            cam.batch_size = BATCH
            return cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets])

    candidates = {
        "cnnvis": run_cnnvis,
        "torchcam": run_torchcam,
        "grad-cam": run_jacobgil,
        "forward-no-grad x32": lambda: forward_no_grad(model, x.expand(BATCH, -1, -1, -1)),
    }
    timings = ctx.measure(workload, candidates)
    t = {name: timing.median for name, timing in timings.items()}
    rec = record(model, x, [LAYER], target=targets)
    rows_forwarded = len(mask_plan(rec.activations[LAYER].detach(), reuse=True)[0])
    rows = [time_row(workload, timings[n]) for n in candidates if n != "cnnvis"]
    faster = min(t["torchcam"], t["grad-cam"])
    rows.append(
        Row(
            workload,
            "cnnvis",
            t["cnnvis"],
            faster / t["cnnvis"],
            Target("faster peer/cnnvis", ">=", SPEEDUP),
            note=f"{rows_forwarded} masked forwards for 512 channels",
        )
    )
    rows.append(cpu_time_row(workload, timings, "min(torchcam,grad-cam)/cnnvis", ">=", SPEEDUP))

    ours = run_cnnvis()
    relu = ours.layer_map.clamp(min=0)
    rows.append(agreement_row(workload, "cnnvis~torchcam", correlation(relu, run_torchcam())))
    with quiet():
        theirs = torch.from_numpy(run_jacobgil())
    up = upsample(relu, tuple(x.shape[-2:]))
    rows.append(
        agreement_row(workload, "cnnvis~grad-cam", correlation(up, theirs), "at 224x224", False)
    )
    aligned = upsample(run_cnnvis(align_corners=True).layer_map.clamp(min=0), tuple(x.shape[-2:]))
    rows.append(
        agreement_row(
            workload,
            "cnnvis(aligned)~grad-cam",
            correlation(aligned, theirs),
            "align_corners=True, at 224x224",
        )
    )
    return rows
