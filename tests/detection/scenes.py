"""Synthetic scenes (squares and discs on textured backgrounds, with their boxes) and a tiny
single-shot detector trained on them in seconds on the CPU, for tests that need a model which
really detects something.

The detector returns torchvision-style output: a list with one dict per image of "boxes"
(K, 4) (x0, y0, x1, y1 pixels), "scores" (K,), "labels" (K,) (1 square, 2 disc) and
"probabilities" (K, 3) (background, square, disc), all differentiable in the input.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

SIZE = 64
STRIDE = 4
CLASSES = ("background", "square", "disc")
SQUARE, DISC = 1, 2


def _texture(generator: torch.Generator) -> Tensor:
    """A textured background (3, SIZE, SIZE): smooth colour noise plus faint stripes."""
    coarse = torch.rand(1, 3, 8, 8, generator=generator) * 0.5 + 0.25
    smooth = F.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[0]
    angle = float(torch.rand(1, generator=generator)) * math.pi
    period = 4 + float(torch.rand(1, generator=generator)) * 6
    ys, xs = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    stripes = torch.sin((xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / period)
    noise = torch.rand(3, SIZE, SIZE, generator=generator) * 0.1
    return (smooth + 0.08 * stripes + noise).clamp(0, 1)


def draw(image: Tensor, kind: int, box: tuple[int, int, int, int], colour: Tensor) -> None:
    """Paint a filled square or disc filling `box` onto `image` in place."""
    x0, y0, x1, y1 = box
    if kind == SQUARE:
        image[:, y0:y1, x0:x1] = colour[:, None, None]
        return
    ys, xs = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    cy, cx, r = (y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2, (x1 - x0) / 2
    inside = (ys - cy) ** 2 + (xs - cx) ** 2 <= r**2
    image[:, inside] = colour[:, None]


def _colour(generator: torch.Generator) -> Tensor:
    """A saturated colour, far from the mid-grey background."""
    colour = torch.rand(3, generator=generator)
    colour[int(torch.randint(0, 3, (1,), generator=generator))] = 1.0
    colour[int(torch.randint(0, 3, (1,), generator=generator))] = 0.0
    return colour


def random_scene(generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """(image (3, SIZE, SIZE), boxes (K, 4), labels (K,)) with one to three shapes that do
    not overlap."""
    image = _texture(generator)
    boxes: list[tuple[int, int, int, int]] = []
    labels = []
    count = int(torch.randint(1, 4, (1,), generator=generator))
    for _ in range(30):
        if len(boxes) == count:
            break
        side = int(torch.randint(12, 21, (1,), generator=generator))
        x0, y0 = (int(v) for v in torch.randint(0, SIZE - side + 1, (2,), generator=generator))
        box = (x0, y0, x0 + side, y0 + side)
        if any(_overlap(box, other) for other in boxes):
            continue
        kind = int(torch.randint(1, 3, (1,), generator=generator))
        draw(image, kind, box, _colour(generator))
        boxes.append(box)
        labels.append(kind)
    return image, torch.tensor(boxes, dtype=torch.float32), torch.tensor(labels)


def _overlap(a: tuple[int, ...], b: tuple[int, ...], margin: int = 3) -> bool:
    return not (
        a[2] + margin <= b[0]
        or b[2] + margin <= a[0]
        or a[3] + margin <= b[1]
        or b[3] + margin <= a[1]
    )


def two_shapes(seed: int = 7) -> tuple[Tensor, Tensor, Tensor]:
    """A fixed test scene: a square at the top left, a disc at the bottom right."""
    generator = torch.Generator().manual_seed(seed)
    image = _texture(generator)
    boxes = [(6, 8, 24, 26), (38, 36, 56, 54)]
    draw(image, SQUARE, boxes[0], torch.tensor([0.9, 0.1, 0.1]))
    draw(image, DISC, boxes[1], torch.tensor([0.1, 0.2, 0.9]))
    return image, torch.tensor(boxes, dtype=torch.float32), torch.tensor([SQUARE, DISC])


class TinyDetector(nn.Module):
    """A single-shot detector on a 16 x 16 grid (stride 4): per cell, class probabilities
    (background, square, disc) and the distances to the box's four sides."""

    def __init__(self, score_threshold: float = 0.5, iou_threshold: float = 0.3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 48, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(48, 48, 3, padding=2, dilation=2),
            nn.ReLU(),
            nn.Conv2d(48, 48, 3, padding=2, dilation=2),
            nn.ReLU(),
        )
        self.classes = nn.Conv2d(48, len(CLASSES), 1)
        self.sides = nn.Conv2d(48, 4, 1)
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold

    def heads(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Class logits (N, 3, 16, 16) and side distances in pixels (N, 4, 16, 16)."""
        f = self.features(x)
        return self.classes(f), F.softplus(self.sides(f)) * 8

    def forward(self, images: Tensor | list[Tensor]) -> list[dict[str, Tensor]]:
        x = torch.stack(list(images)) if isinstance(images, list) else images
        logits, sides = self.heads(x)
        probabilities = logits.softmax(dim=1).flatten(2).transpose(1, 2)  # (N, cells, 3)
        centres = _cell_centres(x.device)  # (cells, 2) as (x, y)
        distances = sides.flatten(2).transpose(1, 2)  # (N, cells, 4): left, top, right, bottom
        boxes = torch.cat([centres - distances[..., :2], centres + distances[..., 2:]], dim=2)
        outputs = []
        for n in range(x.shape[0]):
            scores, labels = probabilities[n, :, 1:].max(dim=1)
            keep = torch.nonzero(scores > self.score_threshold).flatten()
            kept = torchvision.ops.nms(
                boxes[n, keep].detach(), scores[keep].detach(), self.iou_threshold
            )
            keep = keep[kept]
            outputs.append(
                {
                    "boxes": boxes[n, keep].clamp(0, SIZE),
                    "scores": scores[keep],
                    "labels": labels[keep] + 1,
                    "probabilities": probabilities[n, keep],
                }
            )
        return outputs


def _cell_centres(device: torch.device) -> Tensor:
    cells = SIZE // STRIDE
    ys, xs = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
    centres = torch.stack([xs, ys], dim=-1).reshape(-1, 2).float()
    return (centres * STRIDE + STRIDE / 2).to(device)


def _training_targets(boxes: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per cell: the class (0 background), the side distances, and whether it is positive (its
    centre in the middle half of a box)."""
    centres = _cell_centres(torch.device("cpu"))
    classes = torch.zeros(len(centres), dtype=torch.long)
    sides = torch.zeros(len(centres), 4)
    for box, label in zip(boxes, labels, strict=True):
        middle = (box[:2] + box[2:]) / 2
        half = (box[2:] - box[:2]) / 4
        inside = ((centres - middle).abs() <= half + 0.5).all(dim=1)
        classes[inside] = label
        sides[inside] = torch.cat([centres[inside] - box[:2], box[2:] - centres[inside]], dim=1)
    return classes, sides, classes > 0


@functools.lru_cache(maxsize=1)
def trained_detector(steps: int = 300, batch: int = 16, seed: int = 0) -> TinyDetector:
    """A TinyDetector trained on random scenes (seconds on the CPU), in eval mode; cached."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = TinyDetector()
    optimizer = torch.optim.Adam(model.parameters(), lr=4e-3)
    weights = torch.tensor([0.3, 1.0, 1.0])
    for _ in range(steps):
        scenes = [random_scene(generator) for _ in range(batch)]
        x = torch.stack([s[0] for s in scenes])
        targets = [_training_targets(s[1], s[2]) for s in scenes]
        classes = torch.stack([t[0] for t in targets])
        sides = torch.stack([t[1] for t in targets])
        positive = torch.stack([t[2] for t in targets])
        logits, predicted = model.heads(x)
        logits = logits.flatten(2).transpose(1, 2)  # (N, cells, 3)
        predicted = predicted.flatten(2).transpose(1, 2)
        loss = F.cross_entropy(logits.reshape(-1, 3), classes.reshape(-1), weight=weights)
        if positive.any():
            loss = loss + F.smooth_l1_loss(predicted[positive], sides[positive]) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()
