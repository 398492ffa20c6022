"""Reading, hashing and decoding images in worker processes; a bad file is data, not an error.

`decode` is the one place an input file is read: it hashes the bytes (sha256), stops there when
the hash is already done (resume), else decodes and preprocesses the image to the uint8 pixels
the model will see. Every failure becomes a record with the error's type and message. The local
engine runs it in `torch.utils.data.DataLoader` workers, the Ray engine in Ray Data tasks.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import ImageError
from ..model import Preprocess
from .inputs import Item
from .lock import release_in_worker

OK, ERROR, SKIPPED = "ok", "error", "skipped"

# What a missing field of a decoded record is in fixed-type columns (decode_batch)
MISSING = {
    "sha256": "",
    "error_type": "",
    "error": "",
    "size_bytes": -1,
    "width": -1,
    "height": -1,
}


@dataclass
class Decoded:
    """One input file after reading: its hash, and either its pixels or why there are none."""

    index: int
    status: str  # OK, ERROR or SKIPPED (already done for these settings)
    sha256: str | None = None
    size_bytes: int | None = None
    width: int | None = None
    height: int | None = None
    pixels: torch.Tensor | None = None  # (3, crop, crop) uint8, exactly the model's view x 255
    error_type: str | None = None
    error: str | None = None
    decode_seconds: float = 0.0


def decode(
    index: int,
    path: str,
    preprocess: Preprocess,
    done: Collection[str],
    max_pixels: int | None = None,
) -> Decoded:
    """Read, hash and (unless done) decode one file; never raises for a bad file."""
    from ..files import read_limited
    from ..images import load_image

    start = time.perf_counter()
    try:
        data = read_limited(path)  # a regular file, at most max_file_bytes(): never a FIFO
    except (OSError, ImageError) as error:
        return Decoded(index, ERROR, error_type=type(error).__name__, error=str(error))
    sha = hashlib.sha256(data).hexdigest()
    record = Decoded(index, OK, sha, len(data))
    if sha in done:
        record.status = SKIPPED
        return record
    try:
        image = load_image(data, max_pixels=max_pixels)
        record.width, record.height = image.size
        display = preprocess.to_display(image)  # k / 255 exactly: resize and crop are uint8
        record.pixels = (display * 255).round_().to(torch.uint8)
    except Exception as error:  # a bad image is recorded, whatever PIL raised
        record.status = ERROR
        record.error_type = type(error).__name__
        record.error = str(error) or repr(error)
    record.decode_seconds = time.perf_counter() - start
    return record


def to_display(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> the [0, 1] float image `Preprocess.to_display` returned (bit-exact)."""
    return pixels.to(torch.float32).mul_(1.0 / 255)  # as torchvision's to_dtype(scale=True)


class ImageFiles(Dataset):
    """The files of a run as a map-style dataset of `Decoded` records."""

    def __init__(
        self,
        items: Sequence[Item],
        preprocess: Preprocess,
        done: Collection[str],
        max_pixels: int | None = None,
    ):
        self.paths = [item.path for item in items]
        self.preprocess = preprocess
        self.done = frozenset(done)
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Decoded:
        return decode(index, self.paths[index], self.preprocess, self.done, self.max_pixels)


def collate(records: list[Decoded]) -> list[Decoded]:
    """Keep the records as they are (the main process regroups the good ones into batches)."""
    return records


def loader(dataset: ImageFiles, chunk: int, workers: int) -> Any:
    """A DataLoader that decodes in `workers` processes, `chunk` files per task, in order."""
    return DataLoader(
        dataset,
        batch_size=chunk,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
        worker_init_fn=release_in_worker,
    )


def decode_batch(
    batch: dict[str, np.ndarray],
    preprocess: Preprocess,
    done: frozenset[str],
    max_pixels: int | None = None,
) -> dict[str, np.ndarray]:
    """Read, hash and decode a batch of files into fixed-type NumPy columns (a Ray Data block:
    a missing value is MISSING's, not None; the Ray engine's decoding tasks and CPU actors)."""
    size = preprocess.crop_size
    n = len(batch["index"])
    pixels = np.zeros((n, 3, size, size), dtype=np.uint8)
    out: dict[str, list[Any]] = {name: [] for name in ("status", "decode_seconds", *MISSING)}
    for i, (index, path) in enumerate(zip(batch["index"], batch["path"], strict=True)):
        record = decode(int(index), str(path), preprocess, done, max_pixels)
        out["status"].append(record.status)
        out["decode_seconds"].append(record.decode_seconds)
        for name, missing in MISSING.items():
            value = getattr(record, name)
            out[name].append(missing if value is None else value)
        if record.pixels is not None:
            pixels[i] = record.pixels.numpy()
    columns = {name: np.array(values) for name, values in out.items()}
    for name in ("sha256", "error_type", "error", "status"):
        columns[name] = np.array(out[name], dtype=object)
    return {
        "index": batch["index"],
        "label_index": batch["label_index"],
        "pixels": pixels,
        **columns,
    }
