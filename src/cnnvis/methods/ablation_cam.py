"""Ablation-CAM: feature maps weighted by how much the target score drops without each of them.

Desai & Ramaswamy 2020 (WACV): w_k = (y_c - y_c^k) / y_c, with y_c^k the score when channel k of
the layer's output is set to `value` (0, the paper's ablation); map = Σ_k w_k A_k, raw (before
the ReLU). pytorch-grad-cam ablates to 0 only when the activation's minimum is 0, and otherwise
to min - 1e7; pass `value` to choose.

How the ablated forwards run: a forward hook on the layer replaces its output — at its last call
in a forward, the one the recording keeps — with a batch of copies of the recorded activation,
each with one channel ablated. Nothing before the layer depends on the ablation, so by default
(`share_prefix=True`) the model runs on the single image (batch 1) and the ablated batch
broadcasts through the rest of the network: the cost is the network after the layer, once per
channel. Where the model's code after the layer does not broadcast (a concatenation with an
earlier tensor, a reshape to the input's batch size), an error, a wrong output batch size, or a
check row (the unablated activation, which must give back the image's score) shows it, and the
input is repeated instead: everything before the layer then runs once per ablated copy.
(pytorch-grad-cam swaps the layer's module for one that returns the ablated activations, which
skips only the layer itself.) Channels already equal to `value` everywhere are not forwarded:
ablating them changes nothing, so their weight is exactly 0. A channel is ablated in the layer's
own layout: (N, C, h, w), channels-last (N, h, w, C), or tokens (N, T, C), where it is set to
`value` in every token, the class token's too (as pytorch-grad-cam's AblationLayerVit does).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..capture import Recording
from ..errors import MethodError
from ..forwards import first_tensor
from ..layers import resolve_layer
from ..progress import report_current
from ._batching import Score, positive_int, scoring
from .cam import layer_activation, required_layer, weighted_sum
from .facts import Cost, MethodInfo, Needs
from .registry import register

log = logging.getLogger(__name__)


class _Replace:
    """A forward hook that hands downstream `output` instead of the layer's own output at the
    `at`-th call of a forward (counted in `calls`); without an `output` it only counts."""

    def __init__(self) -> None:
        self.calls = 0
        self.at: int | None = None
        self.output: torch.Tensor | None = None

    def arm(self, at: int | None, output: torch.Tensor | None = None) -> None:
        self.calls, self.at, self.output = 0, at, output

    def __call__(self, module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        self.calls += 1
        replacement = self.output
        if replacement is None or self.calls != self.at:
            return None
        tensor, rebuild = first_tensor(output)
        if tensor is None or rebuild is None or tensor.shape[1:] != replacement.shape[1:]:
            shape = None if tensor is None else tuple(tensor.shape)
            raise MethodError(
                f"ablation-cam: the layer's output is {shape} in this forward, not the recorded "
                f"{tuple(replacement.shape[1:])} per image"
            )
        return rebuild(replacement.clone())  # an in-place op downstream must not reach it


def channel_dim(rec: Recording, layer: str, spatial: torch.Tensor) -> int:
    """Where the channels are in the layer's own output: dim 1 when `layer_activation` gave it
    as it is (N, C, h, w), else the last dim (channels-last maps, transformer tokens)."""
    raw = rec.activations[layer]
    same = spatial.data_ptr() == raw.data_ptr() and spatial.stride() == raw.stride()
    return 1 if same and spatial.shape == raw.shape else raw.dim() - 1


def ablated_rows(act: torch.Tensor, channels: torch.Tensor, value: float, dim: int) -> torch.Tensor:
    """Copies of one image's output `act` (without the batch dim; channels at `dim` of the
    batched output), copy j with channel channels[j] set to `value`; a channel index of -1
    leaves its copy unablated (a check row)."""
    rows = act.movedim(dim - 1, 0).expand(len(channels), *act.movedim(dim - 1, 0).shape).clone()
    ablate = (channels >= 0).nonzero().squeeze(1)
    rows[ablate, channels[ablate]] = value
    return rows.movedim(1, dim).contiguous()


def ablation_cam(
    rec: Recording,
    layer: str | None,
    batch_size: int = 32,
    value: float = 0.0,
    share_prefix: bool = True,
) -> torch.Tensor:
    """Ablation-CAM, raw: Σ_k (y_c - y_c^k) / y_c A_k, y_c^k the score with channel k of the
    layer set to `value` (Desai & Ramaswamy 2020)."""
    layer = required_layer(layer)
    acts = layer_activation(rec, layer).detach()
    positive_int("batch_size", batch_size, "ablation-cam")
    dtype = torch.promote_types(acts.dtype, torch.float32)
    ablation = _Ablation(rec, layer, channel_dim(rec, layer, acts), value, share_prefix)
    drops = torch.zeros(acts.shape[:2], dtype=dtype, device=acts.device)
    with scoring(rec, hooks=[(resolve_layer(rec.model, layer), ablation.replace)]) as score:
        base = ablation.start(score).to(dtype)
        if (base == 0).any():
            raise MethodError(
                "ablation-cam: the target score is 0 for an image, so (y_c - y_c^k) / y_c is "
                "undefined; choose another target or method"
            )
        for i in range(len(acts)):
            channels, scores = ablation.image(score, i, batch_size, base[i])
            drops[i, channels] = (base[i] - scores.to(dtype)) / base[i]
    return weighted_sum(acts.to(dtype), drops)


class _Ablation:
    """The ablated forwards of one recording at one layer (see the module's notes)."""

    def __init__(self, rec: Recording, layer: str, dim: int, value: float, share_prefix: bool):
        self.x = rec.inputs.detach()
        self.output = rec.activations[layer].detach()  # ablated in its own layout
        self.layer, self.dim, self.value = layer, dim, value
        self.share_prefix = share_prefix
        self.replace = _Replace()
        self.calls = 0

    def start(self, score: Score) -> torch.Tensor:
        """Each image's own score, unablated (N,), counting the layer's calls per forward."""
        self.replace.arm(None)
        base = score(self.x).diagonal()
        self.calls = self.replace.calls
        if self.calls == 0:
            raise MethodError(f"ablation-cam: layer {self.layer} did not run in the forward")
        return base

    def image(
        self, score: Score, i: int, batch_size: int, base: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(channels, their ablated scores) for image i; channels already equal to `value`
        everywhere are left out (their weight is 0)."""
        live = (self.output[i].movedim(self.dim - 1, 0) != self.value).flatten(1).any(dim=1)
        live = live.nonzero().squeeze(1)
        todo = torch.cat([live.new_full((1,), -1), live]) if self.share_prefix else live
        found: list[torch.Tensor] = []
        for start in range(0, len(todo), batch_size):
            channels = todo[start : start + batch_size]
            rows = ablated_rows(self.output[i], channels, self.value, self.dim)
            scores = self._shared(score, i, rows, base, bool(channels[0] < 0))
            if scores is None:
                scores = self._repeated(score, i, rows)
            found.append(scores)
            report_current(min(start + batch_size, len(todo)), len(todo))
        return live, torch.cat(found)[todo >= 0]

    def _shared(
        self, score: Score, i: int, rows: torch.Tensor, base: torch.Tensor, check: bool
    ) -> torch.Tensor | None:
        """The scores of `rows` from a forward of image i alone whose layer output is replaced
        by the whole batch of rows (the first one unablated when `check`: it must give back
        `base`); None, from then on, when the model's code does not broadcast the batch."""
        if not self.share_prefix:
            return None
        self.replace.arm(self.calls, rows)
        try:
            scores = score(self.x[i : i + 1])
        except Exception as error:  # the repeated-input path raises real errors again
            self._give_up(f"it raised {error!r}")
            return None
        if scores.shape[0] != len(rows) or self.replace.calls != self.calls:
            self._give_up(f"{scores.shape[0]} rows came out for {len(rows)}")
            return None
        scores = scores[:, i]
        if check and not abs(float(scores[0] - base)) <= 1e-3 * max(1.0, abs(float(base))):
            self._give_up("the unablated row does not give back the image's score")
            return None
        return scores

    def _give_up(self, why: str) -> None:
        log.info(
            "ablation-cam: the ablated batch does not broadcast (%s); repeating the input", why
        )
        self.share_prefix = False

    def _repeated(self, score: Score, i: int, rows: torch.Tensor) -> torch.Tensor:
        """The scores of `rows` from a forward of image i repeated once per row."""
        self.replace.arm(self.calls, rows)
        scores = score(self.x[i : i + 1].expand(len(rows), *self.x.shape[1:]).contiguous())
        if self.replace.calls != self.calls:
            raise MethodError(
                f"ablation-cam: layer {self.layer} ran {self.replace.calls} times in an ablated "
                f"forward and {self.calls} times unablated"
            )
        return scores[:, i]


register(
    MethodInfo(
        name="ablation-cam",
        order=31,
        kind="cam",
        summary="Feature maps weighted by the drop of the class score when each one is zeroed.",
        formula="Σ_k (y_c - y_c^k) / y_c · A_k",
        paper="Desai & Ramaswamy 2020, WACV",
        cost=Cost(
            "1 forward + the layers after the layer once per channel (batched, no gradients)",
            per="channel",
        ),
        compute=ablation_cam,
        needs=Needs(layer=True),
    )
)
