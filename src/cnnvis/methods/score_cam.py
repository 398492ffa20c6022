"""Score-CAM: feature maps weighted by the score of the input masked by each of them.

Wang et al. 2020, arXiv:1910.01279. For channel k of the layer's activation A (N, C, h, w) the
mask M_k = minmax(U(A_k)), U bilinear upsampling to the input size (align_corners=False),
multiplies the input; the forward of X ⊙ M_k gives s_k, the target's logit (or the unit's
activation for a unit target), and

    softmax="channels" (default)  w = softmax_k(s_k)               TorchCAM, pytorch-grad-cam
    softmax="classes"             w_k = softmax(f(X ⊙ M_k))_c      the paper's reference code

map = Σ_k w_k A_k, raw (before Score-CAM's ReLU). Where the implementations differ:
- mask: upsampled, then min-max normalised (the paper's code). TorchCAM normalises at the
  layer's resolution before upsampling; pytorch-grad-cam upsamples with align_corners=True.
- baseline: TorchCAM subtracts the unmasked input's score, which the softmax over channels
  cancels exactly; there is none here.
- a constant channel (max = min at the layer's resolution, e.g. all zero after a ReLU) has an
  all-zero mask (TorchCAM's (A - min) / (max - min + eps) = 0), so it is scored on X ⊙ 0; the
  paper's code gives it weight 0 instead, which differs only by a constant added to the map when
  the channel is a non-zero constant.

`align_corners=True` reproduces pytorch-grad-cam's masks exactly.

Speed. Savings that cannot change the result (`reuse=True`): every constant channel of every
image masks the input to the same all-zero input, forwarded once for the whole batch, and
channels of an image with the same min-max normalised map (equal up to a positive scale and
shift, e.g. two channels active at one and the same position) share one forward. The masked inputs run in batches of
`batch_size` under inference mode and, on CPU, with every eval-mode BatchNorm folded into the
convolution before it (`folding.BatchNormFolding`, `fold_batch_norm=True`) and, in float32, in
channels_last memory format (oneDNN's faster layout); both give the same values up to rounding.
Measured on ResNet-18 `layer4`, 224x224, one CPU thread (process CPU seconds, 3 interleaved
runs): 14.7 s plain, 11.0 s channels_last, 9.1 s channels_last + folding. On GPU neither is
applied (not measured there).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..capture import Recording
from ..errors import MethodError
from ..forwards import fast_settings
from ..progress import report_current
from ..targets import ClassTarget, describe
from ._batching import choice, positive_int, scoring
from .cam import layer_activation, weighted_sum
from .facts import Cost, MethodInfo, Needs
from .registry import register

log = logging.getLogger(__name__)

SOFTMAX = ("channels", "classes")


def normalized_masks(
    maps: torch.Tensor, size: Sequence[int], align_corners: bool = False
) -> torch.Tensor:
    """(B, 1, h, w) maps upsampled bilinearly to `size`, each min-max normalised to [0, 1]. A
    map that is constant at its own resolution gives an all-zero mask (never NaN, and never the
    rounding noise of interpolating a constant, stretched to [0, 1])."""
    up = F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=align_corners)
    flat = up.flatten(1)
    lo, hi = flat.amin(dim=1), flat.amax(dim=1)
    varies = (maps.flatten(1).amax(dim=1) > maps.flatten(1).amin(dim=1)) & (hi > lo)
    span = torch.where(varies, hi - lo, torch.ones_like(hi))
    view = (-1, 1, 1, 1)
    return (up - lo.view(view)) / span.view(view) * varies.view(view)


def mask_plan(acts: torch.Tensor, reuse: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The maps to forward as masks: (rows (R, h*w), owner image of each row (R,), and the row
    that stands for each channel (N, C)). With `reuse`, one all-zero row serves every constant
    channel of every image, and channels of an image that are equal up to a positive scale and
    shift (A_j = a A_k + b, a > 0: the same min-max normalised map) share one row, their
    normalised map: upsampling is linear and keeps constants, so their masks are the same."""
    n, c = acts.shape[:2]
    flat = acts.flatten(2)
    device = acts.device
    if not reuse:
        owner = torch.arange(n, device=device).repeat_interleave(c)
        return flat.reshape(n * c, -1), owner, torch.arange(n * c, device=device).view(n, c)
    lo, hi = flat.amin(dim=2, keepdim=True), flat.amax(dim=2, keepdim=True)
    constant = (hi == lo).squeeze(2)
    normalised = (flat - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    rows, owners = [], []
    where = torch.zeros(n, c, dtype=torch.long, device=device)
    count = 0
    if constant.any():  # all those masks are zero: X ⊙ 0 is the same input for every image
        rows.append(flat.new_zeros(1, flat.shape[2]))
        owners.append(torch.zeros(1, dtype=torch.long, device=device))
        count = 1
    for i in range(n):
        live = (~constant[i]).nonzero().squeeze(1)
        unique, inverse = torch.unique(normalised[i, live], dim=0, return_inverse=True)
        rows.append(unique)
        owners.append(torch.full((len(unique),), i, dtype=torch.long, device=device))
        where[i, live] = count + inverse
        count += len(unique)
    return torch.cat(rows), torch.cat(owners), where


def channel_scores(
    rec: Recording,
    acts: torch.Tensor,
    batch_size: int = 32,
    probabilities: bool = False,
    reuse: bool = True,
    align_corners: bool = False,
    fold: bool = True,
) -> torch.Tensor:
    """s[n, k]: the score of image n's target on X_n ⊙ M_nk, for every channel (N, C)."""
    x = rec.inputs.detach()
    rows, owner, where = mask_plan(acts, reuse)
    h, w = acts.shape[2:]
    found = []
    fast = fast_settings(x, min(batch_size, len(rows)), fold)
    if fast["channels_last"]:  # X ⊙ M comes out in that layout: no copy before each forward
        x = x.contiguous(memory_format=torch.channels_last)
    with scoring(rec, probabilities=probabilities, rows=batch_size, **fast) as score:
        for start in range(0, len(rows), batch_size):
            chunk = slice(start, start + batch_size)
            masks = normalized_masks(rows[chunk].reshape(-1, 1, h, w), x.shape[2:], align_corners)
            found.append(score(x[owner[chunk]] * masks.to(x.dtype)))
            report_current(min(start + batch_size, len(rows)), len(rows))
    log.debug("score-cam: %d masked forwards for %d channels", len(rows), where.numel())
    scores = torch.cat(found)  # (R, N): every row scored for every image's target
    images = torch.arange(acts.shape[0], device=scores.device)[:, None]
    return scores[where.to(scores.device), images]


def score_cam(
    rec: Recording,
    layer: str | None,
    batch_size: int = 32,
    softmax: str = "channels",
    reuse: bool = True,
    align_corners: bool = False,
    fold_batch_norm: bool = True,
) -> torch.Tensor:
    """Score-CAM, raw (before its ReLU): Σ_k w_k A_k, w from the scores of the input masked by
    each upsampled, normalised A_k (Wang et al. 2020); see the module's notes for `softmax`."""
    acts = layer_activation(rec, layer).detach()
    choice("softmax", softmax, SOFTMAX, "score-cam")
    positive_int("batch_size", batch_size, "score-cam")
    if softmax == "classes" and not isinstance(rec.target, ClassTarget):
        what = "a unit" if rec.unit is not None else "not a class"
        raise MethodError(
            f"score-cam: softmax='classes' needs class logits, and the target is {what} "
            f"({describe(rec.target)}); use softmax='channels', which weighs the target's scores"
        )
    probabilities = softmax == "classes"
    scores = channel_scores(
        rec, acts, batch_size, probabilities, reuse, align_corners, fold_batch_norm
    )
    weights = scores.softmax(dim=1) if softmax == "channels" else scores
    dtype = torch.promote_types(acts.dtype, torch.float32)
    return weighted_sum(acts.to(dtype), weights.to(dtype))


register(
    MethodInfo(
        name="score-cam",
        order=30,
        kind="cam",
        summary="Feature maps weighted by the class score of the input masked by each of them.",
        formula="Σ_k softmax_k(y_c(X ⊙ norm(up(A_k)))) A_k",
        paper="Wang et al. 2020, arXiv:1910.01279",
        cost=Cost(
            "1 forward + 1 per distinct non-constant channel (batched, no gradients)",
            per="channel",
        ),
        compute=score_cam,
        needs=Needs(layer=True),
    )
)
