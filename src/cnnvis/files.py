"""Read untrusted files and walk untrusted folders without hanging, filling memory or looping.

`read_limited` reads only regular files (a symlink to one is fine; a FIFO, a device such as
/dev/zero or a socket is refused at once, without blocking) and at most `max_file_bytes()` bytes
(default: the `CNNVIS_MAX_FILE_BYTES` environment variable, else 256 MiB), in capped chunks, so a
file that grows while it is read cannot take more. `walk_folders` walks a folder tree following
symlinked folders once each: a folder already walked (same device and inode) is not walked again,
so a symlink loop ends; `image_files` lists the images of a folder tree through it.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import ImageError

# the file name endings of the image files a folder is searched for
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
DEFAULT_MAX_FILE_BYTES = 256 * 2**20
MAX_FILE_BYTES_ENV = "CNNVIS_MAX_FILE_BYTES"
CHUNK_BYTES = 2**20


def max_file_bytes(limit: int | None = None) -> int:
    """The byte limit in force: `limit` if given, else `$CNNVIS_MAX_FILE_BYTES`, else 256 MiB."""
    if limit is None:
        text = os.environ.get(MAX_FILE_BYTES_ENV, "").strip()
        if not text:
            return DEFAULT_MAX_FILE_BYTES
        try:
            limit = int(text)
        except ValueError:
            raise ImageError(
                f"{MAX_FILE_BYTES_ENV}={text!r} is not a whole number of bytes"
            ) from None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ImageError(f"the file byte limit must be a positive whole number, got {limit!r}")
    return limit


def read_limited(path: str | os.PathLike[str], limit: int | None = None) -> bytes:
    """The bytes of the regular file at `path` (symlinks followed), at most `limit` of them.

    A FIFO, device, socket or folder, or a file over the limit, is an `ImageError` that says
    so (naming the limit); nothing blocks, and no more than the limit (plus one chunk) is read."""
    limit = max_file_bytes(limit)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(f"{os.fspath(path)} is {_kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise ImageError(_too_big(path, info.st_size, limit))
        chunks, total = [], 0
        while chunk := os.read(fd, min(CHUNK_BYTES, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # the file grew while it was read
                raise ImageError(_too_big(path, total, limit))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    kinds = {
        stat.S_ISFIFO: "a FIFO (named pipe)",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
        stat.S_ISDIR: "a folder",
    }
    return next((name for test, name in kinds.items() if test(mode)), "a special file")


def _too_big(path: str | os.PathLike[str], size: int, limit: int) -> str:
    return (
        f"{os.fspath(path)} is larger than the file limit of {limit:,} bytes "
        f"({size:,} bytes or more); raise {MAX_FILE_BYTES_ENV} to read it"
    )


def walk_folders(
    root: str | os.PathLike[str],
) -> Iterator[tuple[str, list[str], list[str]]]:
    """`os.walk(root, followlinks=True)`, but each folder (device, inode) is walked only once.

    Callers may prune the yielded folder names in place, as with `os.walk`."""
    visited: set[tuple[int, int]] = set()
    try:
        top = os.stat(root)
        visited.add((top.st_dev, top.st_ino))
    except OSError:
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        yield dirpath, dirnames, filenames
        kept = []
        for name in dirnames:
            try:
                info = os.stat(Path(dirpath) / name)
            except OSError:
                continue
            key = (info.st_dev, info.st_ino)
            if key not in visited:
                visited.add(key)
                kept.append(name)
        dirnames[:] = kept


def image_files(root: str | os.PathLike[str], *, recursive: bool = True) -> list[Path]:
    """The image files (by suffix, see `IMAGE_SUFFIXES`) in `root` and, with `recursive`, in
    its sub-folders (walked with `walk_folders`: a symlink loop is walked once), sorted; names
    starting with "." are left out. Files are not opened: a FIFO or device named like an image
    is listed, and refused when read (`read_limited`), so the caller reports it and goes on."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in walk_folders(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        found += [
            Path(dirpath) / name
            for name in filenames
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES
        ]
    return sorted(found, key=lambda path: path.relative_to(root).as_posix())


def write_npz(
    target: str | os.PathLike[str] | IO[bytes], arrays: dict[str, Any], level: int = 1
) -> None:
    """Arrays into an NPZ file (a path or a binary file), as `np.savez_compressed` writes them
    and `np.load` reads them, but with any key (a layer named `file` or `allow_pickle` would
    clash with `savez_compressed`'s own parameters) and a chosen zlib level: on a 224x224
    Grad-CAM map level 1 took 3.5 ms against 4.6 ms for numpy's level 6, for a file 0.7%
    larger. Never pickles."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as file:
                np.lib.format.write_array(file, np.asanyarray(array), allow_pickle=False)
