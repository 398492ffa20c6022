"""RISE: the score on randomly masked copies of the input, averaged with the masks as weights,
from batched forwards without gradients."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..capture import Recording
from ..errors import MethodError
from ..forwards import fast_settings
from ._batching import accumulator, choice, chunks, positive_int, scoring
from .facts import Cost, MethodInfo, Needs
from .registry import register


class MaskBank:
    """N seeded random masks (H, W) in [0, 1], built a few at a time (Petsiuk et al. 2018):
    an s x s grid of cells kept with probability p, upsampled bilinearly to (s + 1) cells and
    cropped at a random shift of up to one cell, so the masks are smooth and not grid-aligned."""

    def __init__(self, count: int, size: tuple[int, int], cells: int, p: float, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.grids = (torch.rand(count, 1, cells, cells, generator=generator) < p).float()
        self.cell = (math.ceil(size[0] / cells), math.ceil(size[1] / cells))
        self.shifts = torch.stack(
            [torch.randint(0, c, (count,), generator=generator) for c in self.cell], dim=1
        ).tolist()
        self.size, self.cells = size, cells

    def __getitem__(self, ids: list[int]) -> torch.Tensor:
        """Masks `ids` as (len(ids), 1, H, W) float32 on the CPU."""
        big = tuple((self.cells + 1) * c for c in self.cell)
        up = F.interpolate(self.grids[ids], size=big, mode="bilinear", align_corners=False)
        (h, w), masks = self.size, []
        for mask, i in zip(up, ids, strict=True):
            dy, dx = self.shifts[i]
            masks.append(mask[:, dy : dy + h, dx : dx + w])
        return torch.stack(masks)


def rise(
    rec: Recording,
    layer: str | None = None,
    *,
    masks: int = 4000,
    cells: int = 7,
    p: float = 0.5,
    fill: float = 0.0,
    score: str = "probability",
    seed: int = 0,
    batch_size: int = 64,
) -> torch.Tensor:
    """Σ_i y(x ⊙ M_i + fill · (1 - M_i)) M_i / (N p) (Petsiuk et al. 2018), the same map in
    every channel. Defaults are the paper's for ImageNet: N = 4000 masks of 7 x 7 cells, p = 0.5,
    the class's softmax probability as the score (`score="logit"` for the logit; a target that
    is not a class, a unit or a mask, always uses its own score). `fill` is in model-input space: 0 is the mean of a normalized input.
    The masks are seeded and the same for every image of a batch. The masked copies are scored
    under inference mode (channels_last and BatchNorms folded on CPU, as Score-CAM).
    """
    count = positive_int("masks", masks, "rise")
    cells = positive_int("cells", cells, "rise")
    batch_size = positive_int("batch_size", batch_size, "rise")
    choice("score", score, ("probability", "logit"), "rise")
    if not 0 < p <= 1:
        raise MethodError(f"rise: p must be in (0, 1], got {p!r}")
    x = rec.inputs.detach()
    n = x.shape[0]
    bank = MaskBank(count, (x.shape[-2], x.shape[-1]), cells, p, seed)
    total = accumulator(x[:, :1])
    per_forward = min(batch_size, count * n)
    fast = fast_settings(x, per_forward)
    probability = score == "probability"
    with scoring(rec, probabilities=probability, rows=per_forward, **fast) as scorer:
        for rows in chunks(count * n, batch_size):  # row r: mask r // n on image r % n
            image, ids = (rows % n).tolist(), (rows // n).tolist()
            unique = sorted(set(ids))
            bank_masks = bank[unique].to(x.device, x.dtype)
            position = {mask_id: j for j, mask_id in enumerate(unique)}
            m = bank_masks[[position[i] for i in ids]]
            masked = x[image] * m + fill * (1 - m)
            scores = scorer(masked)[torch.arange(len(image)), image]
            weighted = scores.to(total.dtype).view(-1, 1, 1, 1) * m.to(total.dtype)
            total.index_add_(0, torch.tensor(image, device=x.device), weighted)
    return (total / (count * p)).to(x.dtype).expand_as(x).contiguous()


register(
    MethodInfo(
        name="rise",
        order=41,
        kind="pixel",
        sign="mean-relative",
        summary="Scores of randomly masked copies of the image, averaged with the masks as weights.",
        formula="Σ_i y(x ⊙ M_i) M_i / (N·p)",
        paper="Petsiuk, Das & Saenko 2018, arXiv:1806.07421",
        cost=Cost("1 forward per mask (N, in batches, no backward)", forwards=0, per="mask"),
        compute=rise,
        needs=Needs(masks=True),
    )
)
