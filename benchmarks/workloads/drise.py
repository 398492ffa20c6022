"""D-RISE, one 64x64 image, 1000 masks (200 with --quick): cnnvis's batched `drise` against the
straightforward per-mask loop (one masked image per forward, its detections compared with the
target one by IoU x cosine x objectness, the map accumulated mask by mask), on the same masks.

The detector is a small single-shot one (random-init, seed 0) with torchvision-style output (a
list of dicts with boxes, scores, labels and class probabilities), about the size of the tiny
detector the tests train; a torchvision detector costs seconds per forward on a shared CPU,
too slow for a thousand masks. Gated: loop / cnnvis >= 3 (wall clock) and agreement of the maps
(Pearson r >= 0.999).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cnnvis.detection import draw_masks, drise

from ..common import Context, Row, agreement_row, correlation, speed_row, time_row
from . import register

SIZE = 64
GRID = 4
BATCH = 50


class SingleShot(nn.Module):
    """A 16 x 16 grid of cells (stride 4), each with class probabilities (background + 3) and
    the distances to a box's sides; the 30 best cells, class-agnostic NMS."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 48, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(48, 48, 3, padding=2, dilation=2),
            nn.ReLU(),
        )
        self.classes = nn.Conv2d(48, 4, 1)
        self.sides = nn.Conv2d(48, 4, 1)

    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        f = self.features(images)
        probabilities = self.classes(f).softmax(dim=1).flatten(2).transpose(1, 2)
        sides = (F.softplus(self.sides(f)) * 8).flatten(2).transpose(1, 2)
        cells = f.shape[-1]
        ys, xs = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
        centres = torch.stack([xs, ys], dim=-1).reshape(-1, 2).float() * 4 + 2
        boxes = torch.cat([centres - sides[..., :2], centres + sides[..., 2:]], dim=2)
        outputs = []
        for n in range(images.shape[0]):
            scores, labels = probabilities[n, :, 1:].max(dim=1)
            keep = scores.topk(30).indices
            keep = keep[torchvision.ops.nms(boxes[n, keep], scores[keep], 0.3)]
            outputs.append(
                {
                    "boxes": boxes[n, keep],
                    "scores": scores[keep],
                    "labels": labels[keep] + 1,
                    "probabilities": probabilities[n, keep],
                }
            )
        return outputs


def per_mask_loop(detector: nn.Module, image: torch.Tensor, index: int, masks: int) -> torch.Tensor:
    """D-RISE written the straightforward way: one mask, one forward, one weight at a time."""
    with torch.no_grad():
        clean = detector(image[None])[0]
        box, probs = clean["boxes"][index : index + 1], clean["probabilities"][index]
        draw = draw_masks(masks, (SIZE, SIZE), grid=GRID, seed=0)
        total = torch.zeros(SIZE, SIZE)
        for i in range(masks):
            mask = draw.render(i, i + 1)[0]
            out = detector((image * mask)[None])[0]
            if len(out["boxes"]) == 0:
                continue
            iou = torchvision.ops.box_iou(box, out["boxes"])[0]
            cosine = F.cosine_similarity(out["probabilities"], probs[None], dim=1)
            total += (iou * cosine).max().clamp(min=0) * mask
    return total / masks


@register("drise", "D-RISE, 64x64, 1000 masks (200 quick), batched vs the per-mask loop")
def drise_masks(ctx: Context) -> list[Row]:
    workload = "drise"
    masks = 200 if ctx.quick else 1000
    torch.manual_seed(0)
    detector = SingleShot().eval().to(ctx.device)
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, SIZE, SIZE, generator=generator).to(ctx.device)
    with torch.no_grad():
        found = detector(image[None])[0]
    index = int(found["scores"].argmax())

    def run_cnnvis():
        return drise(detector, image, index, masks=masks, grid=GRID, batch_size=BATCH)

    def run_loop():
        return per_mask_loop(detector, image, index, masks)

    candidates = {"cnnvis": run_cnnvis, "per-mask loop": run_loop}
    timings = ctx.measure(workload, candidates)
    note = f"{masks} masks, {len(found['boxes'])} detections on the clean image"
    return [
        time_row(workload, timings["per-mask loop"]),
        speed_row(workload, timings, "per-mask loop", "cnnvis", ">=", 3.0, note=note),
        agreement_row(workload, "cnnvis~loop", correlation(run_cnnvis()[None], run_loop()[None])),
    ]
