"""Synthetic scenes and tiny models trained on them, for tests that need a model which really
segments or recognises something (no weights can be downloaded here).

A scene is a 32x32 RGB picture: a textured background (seeded noise plus stripes) with a
square (class 1, reddish) and/or a disc (class 2, greenish) at random places that do not
overlap. `scenes(n, seed)` gives the pictures, the per-pixel class map and the object masks;
`train_segmenter` and `train_multilabel` fit tiny CNNs on them in a few seconds on a CPU.
Another helper may add a detector beside these (boxes come from `Scene.boxes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

SIZE = 32
BACKGROUND, SQUARE, DISC = 0, 1, 2
SHAPE_SIZE = 10  # side of the square, diameter of the disc (pixels)


@dataclass
class Scenes:
    """A batch of scenes: pictures (N, 3, S, S) in [0, 1], classes (N, S, S) (0 background,
    1 square, 2 disc), masks[k] (N, S, S) bool of object k (1 square, 2 disc; empty if absent),
    boxes[k] (N, 4) (x0, y0, x1, y1), end exclusive (zeros where absent)."""

    pictures: torch.Tensor
    classes: torch.Tensor
    masks: dict[int, torch.Tensor]
    boxes: dict[int, torch.Tensor]

    @property
    def labels(self) -> torch.Tensor:
        """(N, 2) float: whether a square, a disc is in each scene (multi-label targets)."""
        return torch.stack([self.masks[k].flatten(1).any(1) for k in (SQUARE, DISC)], 1).float()


def _background(n: int, generator: torch.Generator) -> torch.Tensor:
    noise = 0.25 + 0.2 * torch.rand(n, 3, SIZE, SIZE, generator=generator)
    phase = torch.rand(n, 1, 1, 1, generator=generator) * 6.28
    freq = 0.5 + torch.rand(n, 1, 1, 1, generator=generator)
    ys = torch.arange(SIZE).view(1, 1, SIZE, 1).float()
    stripes = 0.1 * torch.sin(ys * freq + phase)
    return (noise + stripes).clamp(0, 1)


def _shape_mask(kind: int, x0: int, y0: int) -> torch.Tensor:
    mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    if kind == SQUARE:
        mask[y0 : y0 + SHAPE_SIZE, x0 : x0 + SHAPE_SIZE] = True
        return mask
    r = SHAPE_SIZE / 2
    ys, xs = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    return (ys + 0.5 - y0 - r) ** 2 + (xs + 0.5 - x0 - r) ** 2 <= r * r


def _corners(generator: torch.Generator, count: int) -> list[tuple[int, int]]:
    """`count` top-left corners whose shape boxes are at least 2 px apart (drawn again until
    they are)."""
    while True:
        found = torch.randint(0, SIZE - SHAPE_SIZE + 1, (count, 2), generator=generator).tolist()
        if count < 2:
            return [(x, y) for x, y in found]
        (ax, ay), (bx, by) = found
        if abs(ax - bx) >= SHAPE_SIZE + 2 or abs(ay - by) >= SHAPE_SIZE + 2:
            return [(ax, ay), (bx, by)]


def scenes(
    n: int, seed: int = 0, present: tuple[bool, bool] | None = None, both_share: float = 0.5
) -> Scenes:
    """`n` seeded scenes. `present` fixes which shapes appear (square, disc); otherwise both
    appear with probability `both_share` and one of them (either) otherwise."""
    generator = torch.Generator().manual_seed(seed)
    pictures = _background(n, generator)
    classes = torch.zeros(n, SIZE, SIZE, dtype=torch.long)
    masks = {k: torch.zeros(n, SIZE, SIZE, dtype=torch.bool) for k in (SQUARE, DISC)}
    boxes = {k: torch.zeros(n, 4, dtype=torch.long) for k in (SQUARE, DISC)}
    colours = {SQUARE: torch.tensor([0.85, 0.3, 0.25]), DISC: torch.tensor([0.3, 0.8, 0.35])}
    for i in range(n):
        if present is not None:
            which = [k for k, on in zip((SQUARE, DISC), present, strict=True) if on]
        elif float(torch.rand(1, generator=generator)) < both_share:
            which = [SQUARE, DISC]
        else:
            which = [SQUARE if float(torch.rand(1, generator=generator)) < 0.5 else DISC]
        for kind, (x0, y0) in zip(which, _corners(generator, len(which)), strict=True):
            mask = _shape_mask(kind, x0, y0)
            jitter = 0.1 * (torch.rand(3, generator=generator) - 0.5)
            colour = (colours[kind] + jitter).view(3, 1)
            pictures[i][:, mask] = colour.expand(3, int(mask.sum()))
            classes[i][mask] = kind
            masks[kind][i] = mask
            boxes[kind][i] = torch.tensor([x0, y0, x0 + SHAPE_SIZE, y0 + SHAPE_SIZE])
    return Scenes(pictures, classes, masks, boxes)


class Backbone(nn.Sequential):
    """Three 3x3 convolutions (the second with stride 2): 32x32 pictures -> (32, 16, 16)."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
        )


class TinySegmenter(nn.Module):
    """Backbone -> 1x1 convolution to 3 classes -> bilinear upsampling; returns {"out": ...}
    (N, 3, 32, 32) as torchvision's segmentation models do."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = Backbone()
        self.classifier = nn.Conv2d(32, 3, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.classifier(self.backbone(x))
        return {"out": F.interpolate(logits, size=x.shape[-2:], mode="bilinear")}


class TinyMultiLabel(nn.Module):
    """Backbone -> global average pooling -> linear to 2 labels (square, disc) logits."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = Backbone()
        self.fc = nn.Linear(32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(x).mean(dim=(2, 3)))


def _fit(model: nn.Module, loss_of, steps: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(steps):
        batch = scenes(32, seed=1000 * seed + step)
        loss = loss_of(model, batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def train_segmenter(steps: int = 300, seed: int = 0) -> TinySegmenter:
    """A TinySegmenter fitted with per-pixel cross-entropy (a few seconds on a CPU)."""
    torch.manual_seed(seed)
    model = TinySegmenter()

    def loss(m: nn.Module, batch: Scenes) -> torch.Tensor:
        return F.cross_entropy(m(batch.pictures)["out"], batch.classes)

    return _fit(model, loss, steps, seed)


def train_multilabel(steps: int = 300, seed: int = 0) -> TinyMultiLabel:
    """A TinyMultiLabel fitted with binary cross-entropy on which shapes are present."""
    torch.manual_seed(seed)
    model = TinyMultiLabel()

    def loss(m: nn.Module, batch: Scenes) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(m(batch.pictures), batch.labels)

    return _fit(model, loss, steps, seed)


def energy_inside(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The share of each map's positive mass inside its mask (N,)."""
    positive = maps.clamp(min=0).flatten(1).double()
    inside = (positive * masks.flatten(1).double()).sum(1)
    return inside / positive.sum(1).clamp(min=1e-12)
