"""The local engine: DataLoader workers decode, the main thread explains, a thread writes.

Three stages overlap: worker processes read, hash, decode and preprocess the next files while
the model explains the current batch, and the writer thread compresses and renames the maps of
the previous one. Files that are already done or cannot be read never reach the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..model import LoadedModel
from .compute import explain_columns
from .dataset import OK, SKIPPED, Decoded, ImageFiles, loader
from .inputs import Item
from .job import Job
from .rows import Reuse, failed_images, image_fields
from .run_state import Progress
from .writer import Batch, Writer


def run_local(
    model: LoadedModel,
    items: Sequence[Item],
    label_index: Sequence[int | None],
    job: Job,
    reuse: Reuse,
    writer: Writer,
    progress: Progress,
    *,
    batch_size: int,
    workers: int,
) -> None:
    """Explain every item not done yet; outcomes are counted on `progress`."""
    dataset = ImageFiles(items, model.preprocess, reuse.done, job.max_pixels)
    waiting: list[Decoded] = []

    def explain(records: list[Decoded]) -> None:
        pixels = torch.stack([r.pixels for r in records])  # type: ignore[misc]
        labels = np.array([_label(label_index[r.index]) for r in records], dtype=np.int64)
        columns = explain_columns(model, pixels, labels, job)
        images = [_fields(items, label_index, r) for r in records]
        png = pixels.numpy() if job.png else None
        writer.submit(Batch(images, columns, png))
        failed = int(failed_images(columns, job, len(records)).sum())
        progress.count(done=len(records) - failed, failed=failed)

    for records in loader(dataset, batch_size, workers):
        errors, aliases = [], []
        for record in records:
            if record.status == OK:
                waiting.append(record)
            elif record.status == SKIPPED:
                aliases += reuse.alias_rows(_fields(items, label_index, record))
                progress.count(skipped=1)
            else:
                errors.append(_fields(items, label_index, record))
                progress.count(failed=1)
        if errors or aliases:
            writer.submit(Batch(errors, rows=aliases))
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


def _label(index: int | None) -> int:
    return -1 if index is None else index


def _fields(items: Sequence[Item], label_index: Sequence[int | None], record: Decoded) -> dict:
    decoded = {name: getattr(record, name) for name in DECODED_FIELDS}
    return image_fields(items[record.index], label_index[record.index], **decoded)
