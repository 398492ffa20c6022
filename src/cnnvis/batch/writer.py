"""Writing results in a background thread: maps first, then the index rows that point at them.

Each map goes to `OUT/maps/<relpath>/<method>[@layer].npz` (and `.png` with overlays): the
input's own path under the run's root, so equal file names in different folders never collide.
Every file is written to `OUT/.cnnvis-tmp/` and renamed into place, and a batch's index part is written
only after its maps, so an index row always points at a complete map. The queue is bounded: when
the disk is slower than the model, the model waits instead of memory growing.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import files
from ..file_names import safe_name, unique_stems
from .index import SCRATCH_NAME, Index, atomic_write, make_scratch
from .job import Job, MapKey

log = logging.getLogger(__name__)

NPZ_LEVEL = 1
FLUSH_ROWS = 1024  # error and skip rows are flushed with the next batch, or at this many
_STOP = object()


@dataclass
class Batch:
    """One batch for the writer: per-image base fields, and the compute columns if any.

    `images[i]` holds source, relpath, sha256, size_bytes, width, height, label, label_index,
    decode_seconds, and for images without maps error_type and error. `columns` is the output
    of `compute.explain_columns` for the same images (None when none was explained); `pixels`
    (uint8, N x 3 x H x W) are the model's view, for overlays.
    """

    images: list[dict[str, Any]]
    columns: dict[str, np.ndarray] | None = None
    pixels: np.ndarray | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)  # ready-made rows (aliases)


def write_npz(path: Path, arrays: dict[str, np.ndarray], level: int = NPZ_LEVEL) -> None:
    """An image's maps as an NPZ file (see `cnnvis.files.write_npz`)."""
    files.write_npz(path, arrays, level)


def map_path(relpath: str, key: MapKey, suffix: str = ".npz", stem: str | None = None) -> str:
    """Where an image's map goes, relative to OUT (`stem`: the key's file name, see
    `Writer.stems`; by default its `safe_name`)."""
    return f"maps/{relpath}/{stem or safe_name(key.name)}{suffix}"


_PREDICTION = ("pred_index", "pred_name", "pred_prob", "target_index", "target_name", "target_prob")


def _value(columns: dict[str, np.ndarray], name: str, i: int) -> Any:
    column = columns.get(name)
    if column is None:
        return None
    value = column[i]
    return value.item() if isinstance(value, np.generic) else value


class Writer:
    """A thread that writes maps and index parts, in the order batches are submitted."""

    def __init__(self, out: Path, job: Job, model: str, run: str, depth: int = 4, threads: int = 4):
        self.out = Path(out)
        self.job = job
        # two keys that clean to one file name (a/b, a_b) get two files
        self.stems = unique_stems(k.name for k in job.keys)
        self.model = model
        self.run = run
        self.index = Index(self.out)
        self.tmp = make_scratch(self.out / SCRATCH_NAME)
        self.pending: list[dict[str, Any]] = []
        self.parts = 0
        self.error: BaseException | None = None
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cnnvis-map-writer")
        # started at the first submit, after the DataLoader has forked its workers
        self.thread = threading.Thread(target=self._loop, name="cnnvis-batch-writer", daemon=True)

    # ------------------------------------------------------------------ main thread

    def submit(self, batch: Batch) -> None:
        """Queue a batch (blocks while the queue is full); re-raises a failure of the thread."""
        self._check()
        if not self.thread.is_alive() and self.thread.ident is None:
            self.thread.start()
        while True:
            try:
                self.queue.put(batch, timeout=0.5)
                return
            except queue.Full:
                self._check()

    def close(self) -> None:
        """Write everything queued, flush the last rows, stop the thread; re-raise its failure."""
        if self.thread.ident is None:  # nothing was submitted
            self._flush()
        elif self.thread.is_alive():
            self.queue.put(_STOP)
            self.thread.join()
        self._check()

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    # ------------------------------------------------------------------ writer thread

    def _loop(self) -> None:
        try:
            while (batch := self.queue.get()) is not _STOP:
                self._write(batch)
            self._flush()
            self.pool.shutdown()
        except BaseException as error:  # surfaced by submit/close in the main thread
            self.error = error
            while self.queue.get() is not _STOP:  # drain so that submit never blocks forever
                pass

    def _write(self, batch: Batch) -> None:
        self.pending.extend(batch.rows)
        tasks = [(i, image, key) for i, image in enumerate(batch.images) for key in self.job.keys]
        if batch.columns is None:  # rows only, nothing to compress
            self.pending += [self._row(batch, i, image, key) for i, image, key in tasks]
        else:  # zlib and PNG encoding release the GIL: maps are written in parallel
            self.pending += self.pool.map(lambda task: self._row(batch, *task), tasks)
        if batch.columns is not None or len(self.pending) >= FLUSH_ROWS:
            self._flush()

    def _row(self, batch: Batch, i: int, image: dict[str, Any], key: MapKey) -> dict[str, Any]:
        row = {
            **image,
            "method": key.method,
            "layer": key.layer,
            "settings": self.job.settings[key],
            "model": self.model,
            "run": self.run,
        }
        columns = batch.columns
        if columns is None:
            return row
        for name in (*_PREDICTION, "seconds"):
            row[name] = _value(columns, name, i)
        error_type = _value(columns, f"{key.name}:error_type", i)
        if error_type is not None:
            row["error_type"] = error_type
            row["error"] = _value(columns, f"{key.name}:error", i)
            return row
        for stat in ("min", "max", "mean"):
            row[f"map_{stat}"] = _value(columns, f"{key.name}:{stat}", i)
        row["energy_top10"] = _value(columns, f"{key.name}:energy_top10", i)
        row["map_path"] = self._save_npz(image["relpath"], key, columns, i)
        if self.job.png and batch.pixels is not None:
            row["png_path"] = self._save_png(image["relpath"], key, columns, batch.pixels[i], i)
        return row

    def _save_npz(self, relpath: str, key: MapKey, columns: dict[str, np.ndarray], i: int) -> str:
        arrays = {"map": columns[f"{key.name}:map"][i]}
        layer_map = columns.get(f"{key.name}:layer_map")
        if layer_map is not None:
            arrays["layer_map"] = layer_map[i]
        rel = map_path(relpath, key, stem=self.stems.get(key.name))

        atomic_write(self.out / rel, lambda tmp: write_npz(tmp, arrays), self.tmp)
        return rel

    def _save_png(
        self,
        relpath: str,
        key: MapKey,
        columns: dict[str, np.ndarray],
        pixels: np.ndarray,
        i: int,
    ) -> str:
        import torch

        from .. import render

        m = torch.from_numpy(np.ascontiguousarray(columns[f"{key.name}:map"][i]))
        if m.dim() == 2:  # a CAM: ReLU, over the image the model saw
            image = torch.from_numpy(np.ascontiguousarray(pixels)).float() / 255
            picture = render.overlay(image, m.clamp(min=0), cmap=self.job.cmap)
        else:  # a pixel map: the tutorial's grayscale
            picture = render.pixel_map_image(m, "gray")
        rel = map_path(relpath, key, ".png", self.stems.get(key.name))
        atomic_write(self.out / rel, lambda tmp: picture.save(tmp, format="PNG"), self.tmp)
        return rel

    def _flush(self) -> None:
        if self.pending:
            self.index.write_part(self.pending, f"{self.parts:06d}")
            self.parts += 1
            self.pending = []
