"""Procedural textures for concept tests: stripes, dots, and scenes made of two of them in
known regions (the masks the tests score concept maps against)."""

from __future__ import annotations

import math

import torch
from torch import nn


def stripes(size: int, period: float = 4.0, angle: float = 0.0) -> torch.Tensor:
    """(size, size) in [0, 1]: a sine grating of `period` pixels at `angle` radians."""
    y, x = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    phase = (x * math.cos(angle) + y * math.sin(angle)) * 2 * math.pi / period
    return 0.5 + 0.5 * torch.sin(phase)


def dots(size: int, period: int = 8, radius: float = 1.6, shift: int = 0) -> torch.Tensor:
    """(size, size) in {0, 1}: bright discs of `radius` on a dark ground, `period` apart."""
    y, x = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    dy = (y + shift) % period - period / 2
    dx = (x + shift) % period - period / 2
    return ((dy**2 + dx**2) <= radius**2).float()


def two_texture_scenes(n: int, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (n, 3, size, size) in [0, 1], masks (n, 2, size, size)): each image split by a
    random vertical or horizontal line into a stripes part (mask 0) and a dots part (mask 1);
    the textures' phase, angle and the split vary per image."""
    g = torch.Generator().manual_seed(seed)
    images, masks = [], []
    for _ in range(n):
        angle = float(torch.rand(1, generator=g)) * math.pi
        striped = stripes(size, 4.0 + float(torch.rand(1, generator=g)) * 2, angle)
        dotted = dots(size, 8, 1.6, int(torch.randint(0, 8, (1,), generator=g)))
        cut = int(torch.randint(size // 4, 3 * size // 4, (1,), generator=g))
        first = torch.zeros(size, size, dtype=torch.bool)
        if bool(torch.rand(1, generator=g) < 0.5):
            first[:, :cut] = True
        else:
            first[:cut] = True
        if bool(torch.rand(1, generator=g) < 0.5):
            first = ~first
        picture = torch.where(first, striped, dotted)
        images.append(picture.expand(3, -1, -1))
        masks.append(torch.stack([first, ~first]).float())
    return torch.stack(images), torch.stack(masks)


def texture_patches(
    n: int, g: torch.Generator, size: int = 24
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 3, size, size) patches of one texture each, normalized as `normalize` does, and
    their labels: 0 stripes (even rows), 1 dots (odd rows)."""
    pictures = []
    for i in range(n):
        if i % 2 == 0:
            period = 4.0 + float(torch.rand(1, generator=g)) * 2
            picture = stripes(size, period, float(torch.rand(1, generator=g)) * math.pi)
        else:
            picture = dots(size, 8, 1.6, int(torch.randint(0, 8, (1,), generator=g)))
        pictures.append(picture.expand(3, -1, -1))
    return normalize(torch.stack(pictures)), torch.arange(n) % 2


def normalize(pictures: torch.Tensor) -> torch.Tensor:
    """[0, 1] pictures to the texture net's input."""
    return (pictures - 0.5) / 0.25


def texture_net(seed: int = 0, steps: int = 60) -> nn.Sequential:
    """A tiny CNN trained (well under a second) to tell stripes (class 0) from dots (class 1);
    eval mode. Layer "3" is its second ReLU (stride 2)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 5, padding=2),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 2),
    )
    g = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(steps):
        x, y = texture_patches(32, g)
        loss = nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.eval()
