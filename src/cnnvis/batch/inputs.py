"""What a batch run reads: a folder (recursive), an ImageFolder tree, a glob, or a CSV/TXT list.

Every form becomes a sorted list of `Item`s, each with its absolute path, its path relative to a
common root (which is where its outputs go, so equal file names in different folders never
collide) and, for ImageFolder trees and CSV lists with a `label` column, its ground-truth label.
"""

from __future__ import annotations

import csv
import glob
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ImageError
from ..files import IMAGE_SUFFIXES, read_limited, walk_folders

log = logging.getLogger(__name__)

LIST_SUFFIXES = (".csv", ".txt", ".lst")
PATH_COLUMNS = ("path", "file", "filename", "image", "filepath", "source")
GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Item:
    """One image to explain: its absolute path, its path under the run's root, its label."""

    path: str
    relpath: str
    label: str | None = None


@dataclass(frozen=True)
class Inputs:
    """The images of a run, the root their `relpath`s are relative to, and the INPUT's form."""

    items: list[Item]
    root: str
    kind: str  # "folder", "imagefolder", "glob" or "list"
    ignored: int = 0  # files in a folder that are not images by their suffix

    @property
    def labelled(self) -> bool:
        return any(item.label is not None for item in self.items)


def discover(spec: str | os.PathLike[str]) -> Inputs:
    """The images named by INPUT: a folder, an ImageFolder tree, a glob or a CSV/TXT list."""
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        return _from_folder(path)
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        return _from_list(path)
    if path.is_file():
        return _with_root([str(path.resolve())], [None], "list")
    if GLOB_CHARS & set(text):
        return _from_glob(text)
    raise ImageError(
        f"input {text!r} does not exist; give a folder, a glob such as 'photos/**/*.jpg' "
        "(quoted), or a .csv/.txt list of image paths"
    )


def _is_hidden(part: str) -> bool:
    return part.startswith(".")


def _from_folder(root: Path) -> Inputs:
    """Every image under `root`; an ImageFolder tree (only sub-folders at the top) gives labels."""
    root = root.resolve()
    top_files = [p for p in root.iterdir() if p.is_file() and not _is_hidden(p.name)]
    top_dirs = [p for p in root.iterdir() if p.is_dir() and not _is_hidden(p.name)]
    imagefolder = bool(top_dirs) and not any(p.suffix.lower() in IMAGE_SUFFIXES for p in top_files)
    items, ignored = [], 0
    for dirpath, dirnames, filenames in walk_folders(root):  # a symlink loop is walked once
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        for name in filenames:
            if _is_hidden(name):
                continue
            full = Path(dirpath) / name
            if full.suffix.lower() not in IMAGE_SUFFIXES:
                ignored += 1
                continue
            rel = full.relative_to(root).as_posix()
            label = rel.split("/", 1)[0] if imagefolder and "/" in rel else None
            items.append(Item(str(full), rel, label))
    if ignored:
        log.info("%s: ignored %d files that are not images by their suffix", root, ignored)
    items.sort(key=lambda item: item.relpath)
    return Inputs(items, str(root), "imagefolder" if imagefolder else "folder", ignored)


def _from_glob(pattern: str) -> Inputs:
    """The files a glob matches (`**` recursive), folders left out."""
    paths = sorted(
        str(Path(p).resolve()) for p in glob.glob(os.path.expanduser(pattern), recursive=True)
    )
    files = [p for p in paths if os.path.isfile(p)]
    if not files:
        raise ImageError(f"the glob {pattern!r} matches no files")
    return _with_root(files, [None] * len(files), "glob")


def _from_list(path: Path) -> Inputs:
    """Paths from a list: a CSV with a path column (and maybe `label`), or one path a line."""
    base = path.resolve().parent
    try:
        text = read_limited(path).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError, ImageError) as error:
        raise ImageError(f"cannot read the list {path}: {error}") from error
    rows = _csv_rows(text) if path.suffix.lower() == ".csv" else _text_rows(text)
    seen: dict[str, str | None] = {}
    for name, label in rows:
        full = Path(name).expanduser()
        full = (full if full.is_absolute() else base / full).resolve()
        seen.setdefault(str(full), label)
    if not seen:
        raise ImageError(f"the list {path} names no images")
    return _with_root(list(seen), list(seen.values()), "list")


def _text_rows(text: str) -> list[tuple[str, str | None]]:
    lines = (line.strip() for line in text.splitlines())
    return [(line, None) for line in lines if line and not line.startswith("#")]


def _csv_rows(text: str) -> list[tuple[str, str | None]]:
    """(path, label) per row; a header names the path column, else the first column is it."""
    rows = [row for row in csv.reader(text.splitlines()) if row and any(c.strip() for c in row)]
    if not rows:
        return []
    header = [c.strip().lower() for c in rows[0]]
    path_col = next((header.index(n) for n in PATH_COLUMNS if n in header), None)
    if path_col is None:
        return [(row[0].strip(), None) for row in rows]
    label_col = header.index("label") if "label" in header else None
    out = []
    for row in rows[1:]:
        label = row[label_col].strip() if label_col is not None and label_col < len(row) else ""
        out.append((row[path_col].strip(), label or None))
    return [(p, label) for p, label in out if p]


def _with_root(paths: list[str], labels: list[str | None], kind: str) -> Inputs:
    """Items relative to the deepest folder that holds all of `paths`."""
    root = os.path.commonpath([os.path.dirname(p) for p in paths])
    items = [
        Item(p, Path(os.path.relpath(p, root)).as_posix(), label)
        for p, label in zip(paths, labels, strict=True)
    ]
    items.sort(key=lambda item: item.relpath)
    return Inputs(items, root, kind)
