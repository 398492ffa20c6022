"""Tiny seeded models shared by the tests (hand-derivable, float64 where values are checked)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn


class HandNet(nn.Module):
    """x (N, 2, 1, 1) -> 1x1 conv W1 (3x2) -> activation -> GAP -> linear W2 (2x3), float64.

    With x = [1, 2]: h = W1 x = [-1, 4, 3]; relu(h) = [0, 4, 3]; logits = W2 relu(h).
    """

    W1 = [[1.0, -1.0], [2.0, 1.0], [1.0, 1.0]]
    W2 = [[1.0, -3.0, 2.0], [0.5, 1.0, -1.0]]

    def __init__(self, act: str = "module", inplace: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 1, bias=False).double()
        self.conv.weight.data = torch.tensor(self.W1, dtype=torch.float64)[:, :, None, None]
        self.act_kind = act
        self.act = nn.ReLU(inplace=inplace) if act == "module" else nn.ReLU6(inplace=inplace)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 2, bias=False).double()
        self.fc.weight.data = torch.tensor(self.W2, dtype=torch.float64)

    def forward(self, x):
        h = self.conv(x)
        if self.act_kind == "functional":
            a = F.relu(h, inplace=True)
        elif self.act_kind == "method":
            a = h.relu()
        else:
            a = self.act(h)
        return self.fc(self.pool(a).flatten(1))


class TinyCNN(nn.Module):
    """conv-relu-conv-relu-GAP-linear, seeded; `inplace` and `reuse` variants for twins."""

    def __init__(self, inplace: bool = False, reuse: bool = False, classes: int = 5):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=inplace)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1, stride=2)
        self.relu2 = self.relu1 if reuse else nn.ReLU(inplace=inplace)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        return self.fc(self.pool(x).flatten(1))


@pytest.fixture
def hand_net():
    return HandNet()


@pytest.fixture
def hand_input():
    return torch.tensor([1.0, 2.0], dtype=torch.float64).view(1, 2, 1, 1)


@pytest.fixture
def tiny_cnn():
    return TinyCNN().eval()


@pytest.fixture
def tiny_input():
    return torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
