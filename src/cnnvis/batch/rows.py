"""What both engines share between decoding and writing: per-image fields, reuse, outcomes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .dataset import SKIPPED
from .inputs import Item
from .job import Job
from .run_state import Progress
from .writer import Batch, Writer


def image_fields(item: Item, label_index: int | None, **decoded: Any) -> dict[str, Any]:
    """The index fields of one image: where it is, what it holds, and a decode error if any."""
    fields = {
        "source": item.path,
        "relpath": item.relpath,
        "label": item.label,
        "label_index": label_index,
    }
    for name in ("sha256", "size_bytes", "width", "height", "decode_seconds"):
        fields[name] = decoded.get(name)
    if decoded.get("status") == "error":
        fields["error_type"] = decoded.get("error_type")
        fields["error"] = decoded.get("error")
    return fields


def failed_images(columns: dict[str, np.ndarray], job: Job, n: int) -> np.ndarray:
    """Which of `n` explained images have an error in any of their maps (bool array)."""
    failed = np.zeros(n, dtype=bool)
    for key in job.keys:
        column = columns.get(f"{key.name}:error_type")
        if column is not None:
            failed |= np.array([value is not None for value in column], dtype=bool)
    return failed


def map_errors(columns: dict[str, np.ndarray], job: Job, row: int) -> str:
    """What went wrong with the maps of explained image `row`: 'KEY: error' for each failed map."""
    said = []
    for key in job.keys:
        kind = columns.get(f"{key.name}:error_type")
        if kind is not None and kind[row] is not None:
            error = columns.get(f"{key.name}:error")
            said.append(f"{key.name}: {error[row] if error is not None else kind[row]}")
    return "; ".join(said)


class Reuse:
    """Results already in the index, by (content hash, settings): which images are done, and
    rows for a done image found under a new path (moved, copied, or listed twice)."""

    def __init__(self, table: Any, job: Job, run: str):
        self.job = job
        self.run = run
        wanted = set(job.settings.values())
        import pyarrow.compute as pc

        table = table.filter(pc.is_null(table["error_type"]))
        good = [row for row in table.to_pylist() if row["settings"] in wanted]
        by_hash: dict[str, dict[str, dict[str, Any]]] = {}
        self.recorded: set[tuple[str, str]] = set()
        for row in good:
            by_hash.setdefault(row["sha256"], {})[row["settings"]] = row
            self.recorded.add((row["source"], row["settings"]))
        self.rows = by_hash
        self.done = frozenset(sha for sha, rows in by_hash.items() if wanted <= set(rows))

    def alias_rows(self, fields: dict[str, Any]) -> list[dict[str, Any]]:
        """Rows for a done image under a source not yet recorded for these settings."""
        rows = []
        for settings, row in self.rows.get(fields["sha256"], {}).items():
            if (fields["source"], settings) in self.recorded:
                continue
            moved = {name: fields[name] for name in ("source", "relpath", "label", "label_index")}
            copy = {**row, **moved, "run": self.run, "seconds": 0.0, "decode_seconds": None}
            self.recorded.add((fields["source"], settings))
            rows.append(copy)
        return rows


@dataclass
class Outcomes:
    """The job's images (by index) and where both engines send what became of each: rows and
    maps to the writer, done / skipped / failed counts to the progress bar."""

    items: Sequence[Item]
    label_index: Sequence[int | None]
    job: Job
    reuse: Reuse
    writer: Writer
    progress: Progress

    def fields(self, index: int, **decoded: Any) -> dict[str, Any]:
        """The index fields of image `index` of the job (`image_fields`)."""
        return image_fields(self.items[index], self.label_index[index], **decoded)

    def not_explained(self, images: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Images that reach no model, as (status, fields): the ones done before (SKIPPED) get
        their rows under this source, the others (unreadable, not images) an error row."""
        errors: list[dict[str, Any]] = []
        aliases: list[dict[str, Any]] = []
        for status, fields in images:
            if status == SKIPPED:
                aliases += self.reuse.alias_rows(fields)
                self.progress.count(skipped=1)
            else:
                errors.append(fields)
                self.progress.fail(fields["source"], fields.get("error") or "not readable")
        if errors or aliases:
            self.writer.submit(Batch(errors, rows=aliases))

    def explained(
        self, images: list[dict[str, Any]], columns: dict[str, np.ndarray], pixels: Any
    ) -> None:
        """Explained images (fields, compute columns, uint8 pixels or None) to the writer; each
        counted done, or failed when any of its maps has an error."""
        self.writer.submit(Batch(images, columns, pixels))
        failed = failed_images(columns, self.job, len(images))
        for row in np.flatnonzero(failed):
            self.progress.fail(images[row]["source"], map_errors(columns, self.job, int(row)))
        self.progress.count(done=len(images) - int(failed.sum()))
