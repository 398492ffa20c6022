"""File names made from names cnnvis does not choose (layers, methods, images), kept safe.

`safe_name` turns a name into one path component: letters, digits and `-_.@` are kept, any
other character (a `/`, `\\`, `:` or a control character) becomes `_`, and names that would
mean a folder (`.`, `..`, empty) become `_`; ordinary layer names such as `layer4.1.conv2`
are left as they are. `inside` checks that a path built from such names stays in its folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .errors import CnnvisError

_KEPT = frozenset("-_.@")


def safe_name(name: str) -> str:
    """`name` as one file-name component (no separators, no `..`)."""
    text = "".join(c if c.isalnum() or c in _KEPT else "_" for c in str(name))
    return "_" if text.strip(".") == "" else text


def unique_stems(names: Iterable[str]) -> dict[str, str]:
    """Each name's `safe_name`, made unique among them (compared without case, as on macOS
    and Windows): two layers `a/b` and `a_b` become `a_b` and `a_b-2`, never one file."""
    stems: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        stem = base = safe_name(name)
        n = 1
        while stem.lower() in taken:
            n += 1
            stem = f"{base}-{n}"
        taken.add(stem.lower())
        stems[name] = stem
    return stems


def inside(folder: Path, path: Path) -> Path:
    """`path`, if it is inside `folder` once resolved; else a CnnvisError."""
    root = Path(os.path.realpath(folder))
    target = Path(os.path.realpath(path))
    if target != root and root not in target.parents:
        raise CnnvisError(f"refusing to write {path}: it is outside the output folder {folder}")
    return path
