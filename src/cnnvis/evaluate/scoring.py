"""Batched scoring: many perturbed inputs through the model, a few at a time, in inference mode.

Every metric describes its inputs as `Job`s (a count, a function that builds rows `start:stop`
on demand, and the class whose probability is read). `Scorer.run` streams the rows of all jobs
through the model in batches of `batch_size`, filling each batch across job boundaries, so that
only one batch of perturbed images exists at a time and no batch is left half empty.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..forwards import fast_forward, fast_settings, guarded_forward
from ..model import LoadedModel
from ..targets import select_logits

MakeRows = Callable[[int, int], torch.Tensor]


@dataclass(frozen=True)
class Job:
    """`count` inputs for one class: `make(start, stop)` builds rows start..stop-1 as
    (stop - start, C, H, W) model input."""

    count: int
    make: MakeRows
    target: int


def stacked(rows: torch.Tensor, target: int) -> Job:
    """A job over inputs that already exist, (M, C, H, W)."""
    return Job(rows.shape[0], lambda start, stop: rows[start:stop], target)


class Scorer:
    """The softmax probability of a class on many inputs, batch by batch (in
    `forwards.guarded_forward`, without gradients, in channels_last with BatchNorms folded where
    that pays: `forwards.fast_forward`); `forwards` counts the images that went through the
    model, and `on_batch(rows)`, when set, hears of every batch."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        batch_size: int = 32,
        output: str | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model
        self.batch_size = batch_size
        self.output = output
        self.on_batch = on_batch
        self.forwards = 0
        self.batches = 0
        self._forward: Callable[[torch.Tensor], Any] | None = None

    def probabilities(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """softmax(model(inputs))[i, targets[i]] for one batch, as float64 on the CPU."""
        module = self.model.module
        inputs = inputs.to(self.model.device)
        if self._forward is None:  # one plan of BatchNorm folds for every batch
            settings = fast_settings(inputs, self.batch_size)
            self._forward = fast_forward(module, rows=self.batch_size, **settings)
        with guarded_forward(module, grad=False, inference=True):
            logits = select_logits(self._forward(inputs), self.output)
            probs = logits.to(torch.promote_types(logits.dtype, torch.float32)).softmax(dim=1)
            picked = probs.gather(1, targets.to(probs.device)[:, None])[:, 0]
        self.forwards += inputs.shape[0]
        self.batches += 1
        if self.on_batch is not None:
            self.on_batch(int(inputs.shape[0]))
        return picked.double().cpu().clone()

    def run(self, jobs: Sequence[Job]) -> list[torch.Tensor]:
        """The probabilities of every job's rows, one (count,) float64 tensor per job."""
        results = [torch.empty(job.count, dtype=torch.float64) for job in jobs]
        pieces: list[tuple[int, int, int]] = []  # (job, start, stop) waiting for a batch
        room = self.batch_size
        for j, job in enumerate(jobs):
            start = 0
            while start < job.count:
                stop = min(job.count, start + room)
                pieces.append((j, start, stop))
                room -= stop - start
                start = stop
                if room == 0:
                    self._flush(jobs, pieces, results)
                    pieces, room = [], self.batch_size
        if pieces:
            self._flush(jobs, pieces, results)
        return results

    def _flush(
        self,
        jobs: Sequence[Job],
        pieces: list[tuple[int, int, int]],
        results: list[torch.Tensor],
    ) -> None:
        inputs = torch.cat([jobs[j].make(start, stop) for j, start, stop in pieces])
        targets = torch.cat(
            [
                torch.full((stop - start,), jobs[j].target, dtype=torch.long)
                for j, start, stop in pieces
            ]
        )
        scores = self.probabilities(inputs, targets)
        at = 0
        for j, start, stop in pieces:
            results[j][start:stop] = scores[at : at + stop - start]
            at += stop - start
