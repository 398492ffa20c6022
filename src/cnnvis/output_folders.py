"""Output folders: cnnvis writes only into an empty folder or one it wrote before.

Whatever writes a folder of results (a command's `--out`, `Evaluation.save`) claims it first:
a folder that holds anything and carries no `.cnnvis-output` marker (nor a batch index, the
mark of a batch run from before the marker) is refused unless `force`, so files of other
programs and runs are never overwritten; then the folder is created and marked as a cnnvis
output.
"""

from __future__ import annotations

from pathlib import Path

from .errors import OutputError

MARKER_NAME = ".cnnvis-output"


def claim_folder(out: Path, writer: str, force: bool, *, flag: str = "force=True") -> None:
    """Refuse `out` if it holds files cnnvis did not write (unless `force`); create and mark
    it. `writer` names what writes there (in the marker); `flag` is how the caller says
    "force" (the CLI: --force) in the refusal."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file, not a folder; choose a folder")
    if not force and not is_cnnvis_output(out) and any(out.iterdir() if out.is_dir() else ()):
        raise OutputError(
            f"{out} is not empty and is not a cnnvis output folder; cnnvis would add to or "
            f"overwrite its files. Choose a new or empty folder, or pass {flag} to write there "
            "anyway"
        )
    out.mkdir(parents=True, exist_ok=True)
    marker = out / MARKER_NAME
    if not marker.is_file():
        marker.write_text(f"written by cnnvis {writer}; cnnvis may write here again\n")


def is_cnnvis_output(out: Path) -> bool:
    """Whether a folder carries the marker, or the index of a batch run from before it."""
    if (out / MARKER_NAME).is_file():
        return True
    index = out / "index"
    return index.is_dir() and any(index.glob("part-*.parquet"))
