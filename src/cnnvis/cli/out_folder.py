"""The --out folder guard: cnnvis writes only into an empty folder or one it wrote before.

A command that writes an output folder calls `claim` before it writes: a folder that holds
anything and carries no `.cnnvis-output` marker (nor a batch index, the mark of a batch run
from before the marker) is refused unless --force, so files of other programs and runs are
never overwritten; then the folder is created and marked as a cnnvis output.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import CommandError

MARKER_NAME = ".cnnvis-output"


def add_force(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty --out folder that cnnvis did not write (may overwrite files)",
    )


def claim(out: Path, command: str, force: bool) -> None:
    """Refuse `out` if it holds files cnnvis did not write (unless `force`); create and mark it."""
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} is a file, not a folder; choose a folder")
    if not force and not is_cnnvis_output(out) and any(out.iterdir() if out.is_dir() else ()):
        raise CommandError(
            f"--out {out} is not empty and is not a cnnvis output folder; cnnvis would add to or "
            "overwrite its files. Choose a new or empty folder, or pass --force to write there "
            "anyway"
        )
    out.mkdir(parents=True, exist_ok=True)
    marker = out / MARKER_NAME
    if not marker.is_file():
        marker.write_text(f"written by cnnvis {command}; cnnvis may write here again\n")


def is_cnnvis_output(out: Path) -> bool:
    """Whether a folder carries the marker, or the index of a batch run from before it."""
    if (out / MARKER_NAME).is_file():
        return True
    index = out / "index"
    return index.is_dir() and any(index.glob("part-*.parquet"))
