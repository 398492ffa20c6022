"""Check the frames of an ICO file against the pixel limit before Pillow decodes any of them.

Pillow decodes the largest frame of an ICO while opening it, and the header's size bytes (at most
256) need not be the frame's real size: an embedded PNG or BMP says its own. Each frame's real
size is read here from its own header, so an ICO bomb is refused before anything is decoded.
"""

from __future__ import annotations

import struct
from typing import Any

from .errors import Hint, ImageError

ICO_MAGIC = b"\x00\x00\x01\x00"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ENTRY_BYTES = 16


def check_ico_frames(fh: Any, label: str, max_pixels: int) -> None:
    """Refuse an ICO (read from the seekable `fh`) with a frame of more than `max_pixels`
    pixels; other files pass untouched. `fh` is left at its start."""
    try:
        fh.seek(0)
        header = fh.read(6)
        if header[:4] != ICO_MAGIC:
            return
        count = struct.unpack_from("<H", header, 4)[0]
        entries = fh.read(ENTRY_BYTES * count)
        for n in range(len(entries) // ENTRY_BYTES):
            offset = struct.unpack_from("<I", entries, n * ENTRY_BYTES + 12)[0]
            width, height = _frame_size(fh, offset)
            if width * height > max_pixels:
                raise ImageError(
                    f"{label} {'are' if label.endswith('bytes') else 'is'} an ICO with a {width}x{height} frame = {width * height:,} "
                    f"pixels, more than the limit of {max_pixels:,}; it was not decoded",
                    hint=Hint("max-pixels"),
                )
    finally:
        fh.seek(0)


def _frame_size(fh: Any, offset: int) -> tuple[int, int]:
    """(width, height) of the PNG or BMP frame at `offset`, (0, 0) when it cannot be read."""
    fh.seek(offset)
    head = fh.read(24)
    if head[:8] == PNG_SIGNATURE and len(head) >= 24:
        width, height = struct.unpack_from(">II", head, 16)
        return width, height
    if len(head) >= 12:
        width, height = struct.unpack_from("<ii", head, 4)
        return abs(width), abs(height) // 2  # a BMP frame's height counts its AND mask too
    return 0, 0
