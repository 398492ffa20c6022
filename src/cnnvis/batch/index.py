"""The run's index: append-only Parquet part files, written whole then renamed into place.

`OUT/index/` holds `part-*.parquet` files, one per flushed batch. A reader takes all of them in
name order (names start with a nanosecond clock) and keeps the last row of each (source, method,
layer, settings): a later result for the same image supersedes an earlier one (an error retried).
`compact` rewrites them as one file at the end of a run. Because each part is written to a
temporary file and `os.replace`d, a killed process leaves whole parts or none: never a torn one.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import CnnvisError

KEY = ("source", "method", "layer", "settings")


def _pa():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as error:
        raise CnnvisError(
            "batch runs write a Parquet index and need pyarrow: pip install 'cnnvis[batch]'"
        ) from error
    return pa, pq


def schema():
    """The index's columns and types (one row per image and map key)."""
    pa, _ = _pa()
    string, i64, f64 = pa.string(), pa.int64(), pa.float64()
    return pa.schema(
        [
            ("source", string),  # absolute path of the input file
            ("relpath", string),  # its path under the run's root; the maps mirror it
            ("sha256", string),  # of the file's bytes
            ("size_bytes", i64),
            ("width", i64),  # of the decoded image, before preprocessing
            ("height", i64),
            ("label", string),  # ground truth: class folder or CSV label
            ("label_index", i64),  # the label as the model's class index, if it matches one
            ("pred_index", i64),  # top-1
            ("pred_name", string),
            ("pred_prob", f64),
            ("target_index", i64),  # the class explained
            ("target_name", string),
            ("target_prob", f64),
            ("method", string),
            ("layer", string),
            ("settings", string),  # hash of model weights, preprocessing, target, method, params
            ("model", string),
            ("map_path", string),  # .npz relative to OUT: keys "map" (and "layer_map" for CAMs)
            ("png_path", string),
            ("map_min", f64),
            ("map_max", f64),
            ("map_mean", f64),
            ("energy_top10", f64),
            ("seconds", f64),  # this image's share of its batch's explain time
            ("decode_seconds", f64),
            ("error_type", string),
            ("error", string),
            ("run", string),
        ]
    )


SCRATCH_NAME = ".cnnvis-tmp"
SCRATCH_MARKER = "CNNVIS-TEMPORARY-FOLDER"


def make_scratch(folder: Path) -> Path:
    """Create the scratch folder OUT/.cnnvis-tmp with its marker file (which says it is ours)."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / SCRATCH_MARKER
    if not marker.is_file():
        marker.write_text(
            "cnnvis batch writes files here and renames them into place; a run "
            "deletes this folder's leftovers\n"
        )
    return folder


def clear_scratch(out: Path) -> None:
    """Delete the leftovers of a killed run: OUT/.cnnvis-tmp, only if it carries our marker."""
    folder = Path(out) / SCRATCH_NAME
    if folder.is_dir() and not folder.is_symlink() and (folder / SCRATCH_MARKER).is_file():
        shutil.rmtree(folder, ignore_errors=True)


def atomic_write(path: Path, write: Callable[[Path], Any], tmp_dir: Path) -> Path:
    """Write via `write(temporary path)` in `tmp_dir`, then rename onto `path` (same filesystem)."""
    tmp = tmp_dir / f"{uuid.uuid4().hex}-{path.name}"
    try:
        write(tmp)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


class Index:
    """The Parquet part files under OUT/index/."""

    def __init__(self, out: Path):
        self.dir = Path(out) / "index"
        self.tmp = Path(out) / SCRATCH_NAME

    def parts(self) -> list[Path]:
        return sorted(self.dir.glob("part-*.parquet")) if self.dir.is_dir() else []

    def _name(self, tag: str) -> str:
        return f"part-{time.time_ns():020d}-{os.getpid()}-{tag}.parquet"

    def write_part(self, rows: list[dict[str, Any]], tag: str) -> Path:
        """One part file holding `rows`, atomically."""
        pa, pq = _pa()
        self.dir.mkdir(parents=True, exist_ok=True)
        make_scratch(self.tmp)
        table = pa.Table.from_pylist(rows, schema=schema())
        return atomic_write(
            self.dir / self._name(tag), lambda p: pq.write_table(table, p), self.tmp
        )

    def read(self, parts: Iterable[Path] | None = None):
        """Every row of the parts, the last of each (source, method, layer, settings) kept."""
        pa, pq = _pa()
        files = list(self.parts() if parts is None else parts)
        if not files:
            return schema().empty_table()
        tables = []
        for path in files:
            try:
                tables.append(pq.read_table(path, schema=schema()))
            except (OSError, pa.ArrowException) as error:
                raise CnnvisError(
                    f"cannot read the index part {path}: {error}; move it out of {self.dir} "
                    "and run again (its images will be explained again)"
                ) from error
        return latest(pa.concat_tables(tables))

    def compact(self) -> Path | None:
        """Rewrite all parts as one (deduplicated) part; the old parts are removed after."""
        _, pq = _pa()
        parts = self.parts()
        if len(parts) <= 1:
            return parts[0] if parts else None
        table = self.read(parts)
        make_scratch(self.tmp)
        path = atomic_write(
            self.dir / self._name("compact"), lambda p: pq.write_table(table, p), self.tmp
        )
        for old in parts:
            old.unlink(missing_ok=True)
        return path


def latest(table):
    """The last row of each KEY, in the table's order (NULL layers form their own group)."""
    pa, _ = _pa()
    if table.num_rows == 0:
        return table
    numbered = table.append_column("_row", pa.array(range(table.num_rows), pa.int64()))
    keys = [c if c != "layer" else "_layer" for c in KEY]
    layer = numbered.column("layer").fill_null("\x00")
    numbered = numbered.append_column("_layer", layer)
    last = numbered.group_by(keys, use_threads=False).aggregate([("_row", "max")])
    rows = sorted(last.column("_row_max").to_pylist())
    return table.take(pa.array(rows, pa.int64()))


def read_index(out: str | os.PathLike[str]):
    """The index of a batch run in OUT as a pyarrow Table (`.to_pandas()` for a DataFrame)."""
    return Index(Path(out)).read()
