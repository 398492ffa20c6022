"""The --out folder guard of the commands (see `cnnvis.output_folders`): --force, and the
refusal naming --out (OutputError, exit code 8)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import OutputError
from ..output_folders import MARKER_NAME, claim_folder, is_cnnvis_output

__all__ = ["MARKER_NAME", "add_force", "claim", "is_cnnvis_output"]


def add_force(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty --out folder that cnnvis did not write (may overwrite files)",
    )


def claim(out: Path, command: str, force: bool) -> None:
    """Refuse `out` if it holds files cnnvis did not write (unless `force`); create and mark it."""
    try:
        claim_folder(out, command, force, flag="--force")
    except OutputError as error:
        raise OutputError(f"--out {error}") from None
