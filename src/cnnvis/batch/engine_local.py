"""The local engine: DataLoader workers decode, the main thread explains, a thread writes.

Three stages overlap: worker processes read, hash, decode and preprocess the next files while
the model explains the current batch, and the writer thread compresses and renames the maps of
the previous one. Files that are already done or cannot be read never reach the model.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import CnnvisError
from ..model import LoadedModel
from .compute import explain_columns
from .dataset import OK, Decoded, ImageFiles, loader
from .rows import Outcomes


def run_local(model: LoadedModel, outcomes: Outcomes, *, batch_size: int, workers: int) -> None:
    """Explain every image of the job not done yet; what became of each goes to `outcomes`."""
    job = outcomes.job
    dataset = ImageFiles(outcomes.items, model.preprocess, outcomes.reuse.done, job.max_pixels)
    waiting: list[Decoded] = []

    def explain(records: list[Decoded]) -> None:
        pixels = torch.stack([_pixels(r) for r in records])
        labels = np.array([_label(outcomes.label_index[r.index]) for r in records], dtype=np.int64)
        columns = explain_columns(model, pixels, labels, job)
        images = [_fields(outcomes, r) for r in records]
        outcomes.explained(images, columns, pixels.numpy() if job.png else None)

    for records in loader(dataset, batch_size, workers):
        waiting += [r for r in records if r.status == OK]
        outcomes.not_explained((r.status, _fields(outcomes, r)) for r in records if r.status != OK)
        while len(waiting) >= batch_size:
            explain(waiting[:batch_size])
            waiting = waiting[batch_size:]
    if waiting:
        explain(waiting)


DECODED_FIELDS = (
    "status",
    "sha256",
    "size_bytes",
    "width",
    "height",
    "decode_seconds",
    "error_type",
    "error",
)


def _pixels(record: Decoded) -> torch.Tensor:
    """The pixels of a record decoded OK (every such record has them)."""
    if record.pixels is None:
        raise CnnvisError(f"batch: image {record.index} ({record.status}) has no pixels")
    return record.pixels


def _label(index: int | None) -> int:
    return -1 if index is None else index


def _fields(outcomes: Outcomes, record: Decoded) -> dict:
    return outcomes.fields(record.index, **{name: getattr(record, name) for name in DECODED_FIELDS})
