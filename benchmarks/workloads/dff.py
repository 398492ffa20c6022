"""Deep Feature Factorization on ResNet-18, 32 images 224x224, k=4 at layer4: cnnvis against
one forward of the batch (gate: <= 2x) and pytorch-grad-cam's `DeepFeatureFactorization`
(scikit-learn's NMF; informational)."""

from __future__ import annotations

from dataclasses import replace

from pytorch_grad_cam import DeepFeatureFactorization

from cnnvis.concepts import dff

from ..common import Context, Row, forward_no_grad, make_input, quiet, speed_row, time_row
from . import register

BATCH = 32
K = 4


@register("dff-resnet18", "DFF, ResNet-18, 32 images, k=4 at layer4, vs one forward", quick=True)
def dff_resnet18(ctx: Context) -> list[Row]:
    workload = "dff-resnet18"
    model = ctx.model("resnet18")
    x = make_input(BATCH, ctx.device)

    def run_grad_cam():
        with quiet():
            return DeepFeatureFactorization(model, model.layer4)(x, n_components=K)

    candidates = {
        "cnnvis": lambda: dff(model, x, layer="layer4", k=K),
        "pytorch-grad-cam": run_grad_cam,
        f"forward-no-grad x{BATCH}": lambda: forward_no_grad(model, x),
    }
    timings = ctx.measure(workload, candidates)
    return [
        *(time_row(workload, timings[n]) for n in candidates if n != "cnnvis"),
        speed_row(workload, timings, "cnnvis", f"forward-no-grad x{BATCH}", "<=", 2.0),
        replace(
            speed_row(workload, timings, "cnnvis", "pytorch-grad-cam", "<=", 1.0),
            gate=False,
            note="info: pytorch-grad-cam's NMF is scikit-learn's, on NumPy",
        ),
    ]
