"""Load images from files, bytes, arrays, PIL images or named samples, always as 8-bit RGB.

Every failure is an `ImageError` that says what to do. Alpha is composited on white, 16-bit data
is scaled (not clipped) to 8 bits, EXIF orientation is applied, and only the first frame of an
animation is used (logged, and noted in the image's `info["cnnvis_notes"]`). The pixel count
is checked from the header, before anything is decoded, against `max_pixels` (default: the
`CNNVIS_MAX_PIXELS` environment variable, else 100 million); a limit above Pillow's own
decompression-bomb guard lifts that guard for the call, so `max_pixels` is the one limit.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import Hint, ImageError, unknown
from .files import read_limited
from .ico import check_ico_frames
from .image_modes import (
    array_to_uint8,
    channels_last_array,
    gray_array_to_rgb,
    over_white,
    scale_16bit,
    scale_wide,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_ENV = "CNNVIS_MAX_PIXELS"
# The formats whose header gives the size of the frame that is decoded (ICO is checked frame by
# frame before Pillow opens it, see `cnnvis.ico`): everything else is refused before decoding.
ACCEPTED_FORMATS = frozenset(
    {"JPEG", "MPO", "PNG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "PPM", "ICO"}
)
NOTES = "cnnvis_notes"  # key of `Image.info`: what loading did that a user should know
SAMPLE_PREFIX = "sample:"
EXIF_ORIENTATION = 0x0112

# Named samples: files that scikit-image ships in its data folder (no download).
SAMPLE_FILES = {
    "cat": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "astronaut": "astronaut.png",
    "motorcycle": "motorcycle_left.png",
    "motorcycle_right": "motorcycle_right.png",
    "camera": "camera.png",
    "horse": "horse.png",
    "coins": "coins.png",
    "moon": "moon.png",
    "page": "page.png",
    "text": "text.png",
    "brick": "brick.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "cell": "cell.png",
    "clock": "clock_motion.png",
    "color": "color.png",
    "chessboard": "chessboard_RGB.png",
    "hubble": "hubble_deep_field.jpg",
    "ihc": "ihc.png",
    "logo": "logo.png",
    "microaneurysms": "microaneurysms.png",
    "phantom": "phantom.png",
    "retina": "retina.jpg",
    "animation": "no_time_for_that_tiny.gif",
}
SAMPLE_ALIASES = {
    "chelsea": "cat",
    "motorcycle_left": "motorcycle",
    "cameraman": "camera",
    "clock_motion": "clock",
    "hubble_deep_field": "hubble",
}

_PIL_LIMIT_LOCK = threading.Lock()

ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image | np.ndarray


# ----------------------------------------------------------------------------- public API


def load_image(source: ImageSource, *, max_pixels: int | None = None) -> Image.Image:
    """Load one image as an 8-bit RGB PIL image.

    `source`: a file path, "sample:NAME" (see `list_samples`), encoded bytes, a PIL image, or
    a NumPy array (HxW, HxWx1/3/4; uint8, uint16, bool, or float in [0, 1]). Files and bytes
    with more than `max_pixels` pixels (default: `pixel_limit()`) are refused before decoding;
    an image already in memory (PIL, array) is checked only against a `max_pixels` given here.
    """
    in_memory = isinstance(source, Image.Image | np.ndarray)
    max_pixels = sys.maxsize if in_memory and max_pixels is None else pixel_limit(max_pixels)
    if isinstance(source, Image.Image):
        _check_pixels(source.size, max_pixels, "the image")
        try:  # a lazily opened file decodes here
            return to_rgb(_exif_transpose(source))
        except ImageError:
            raise
        except Exception as e:
            raise ImageError(_damaged("the PIL image", e)) from e
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels)
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if not data:
            raise ImageError("the image bytes are empty; pass the contents of an image file")
        return _decode(io.BytesIO(data), "the image bytes", max_pixels, head=data[:8])
    if isinstance(source, str | os.PathLike):
        return _from_path(source, max_pixels)
    raise ImageError(
        f"cannot load an image from a {type(source).__name__}; pass a file path, "
        "'sample:NAME', bytes, a PIL image or a NumPy array"
    )


def load_images(
    sources: ImageSource | Iterable[ImageSource], *, max_pixels: int | None = None
) -> list[Image.Image]:
    """Load several images (a single source is also accepted) as RGB PIL images."""
    single = str | os.PathLike | bytes | bytearray | memoryview | Image.Image
    if isinstance(sources, single) or (isinstance(sources, np.ndarray) and sources.ndim <= 3):
        sources = [sources]
    return [load_image(s, max_pixels=max_pixels) for s in sources]


def pixel_limit(max_pixels: int | None = None) -> int:
    """The pixel limit in force: `max_pixels` if given, else `$CNNVIS_MAX_PIXELS`, else
    100,000,000 (a 10000x10000 image)."""
    if max_pixels is None:
        text = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "").replace(",", "")
        if not text:
            return DEFAULT_MAX_PIXELS
        if not text.isdigit() or int(text) < 1:
            raise ImageError(
                f"{MAX_PIXELS_ENV}={os.environ[MAX_PIXELS_ENV]!r} is not a positive whole "
                f"number of pixels; set it to e.g. 200000000, or unset it for the default"
            )
        return int(text)
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ImageError(f"max_pixels must be a positive whole number, got {max_pixels!r}")
    return max_pixels


def list_samples() -> dict[str, Path]:
    """The named samples whose file is present: name -> path (use as 'sample:NAME')."""
    folder = _sample_folder()
    if folder is None:
        return {}
    found = {name: folder / file for name, file in SAMPLE_FILES.items()}
    return {name: path for name, path in found.items() if path.is_file()}


def sample_path(name: str) -> Path:
    """The file of a named sample (case-insensitive; e.g. 'cat' or 'chelsea')."""
    key = name.strip().lower().removeprefix(SAMPLE_PREFIX)
    key = SAMPLE_ALIASES.get(key, key)
    samples = list_samples()
    if key in samples:
        return samples[key]
    if not samples:
        raise ImageError(
            "no sample images are available: they come with scikit-image "
            "(pip install scikit-image); pass an image file instead"
        )
    raise ImageError(unknown("sample", name, [*samples, *SAMPLE_ALIASES]), hint=Hint("samples"))


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: alpha over white, 16-bit and float data scaled."""
    mode = image.mode
    if mode == "RGB":
        return image.copy()
    if mode in ("1", "L", "CMYK", "YCbCr", "HSV", "RGBX"):
        return image.convert("RGB")
    if mode == "P" and "transparency" not in image.info:
        return image.convert("RGB")
    if mode == "La":  # premultiplied: Pillow converts it only to LA
        return over_white(image.convert("LA"))
    if mode in ("P", "PA", "LA", "RGBA", "RGBa"):
        return over_white(image)
    if mode.startswith("I;16"):
        return gray_array_to_rgb(scale_16bit(np.asarray(image)))
    if mode in ("I", "F"):
        return gray_array_to_rgb(scale_wide(np.asarray(image), mode))
    try:
        return image.convert("RGB")
    except ValueError as e:
        raise ImageError(
            f"cannot convert an image in mode {mode!r} to RGB; save it as an RGB PNG or JPEG"
        ) from e


# ----------------------------------------------------------------------------- paths, bytes


def _from_path(source: str | os.PathLike[str], max_pixels: int) -> Image.Image:
    """Load a file or a named sample."""
    text = os.fspath(source)
    if isinstance(source, str) and text.lower().startswith(SAMPLE_PREFIX):
        path = sample_path(text[len(SAMPLE_PREFIX) :])
    elif isinstance(source, str) and text.lower().startswith(("http://", "https://")):
        raise ImageError(f"cnnvis does not download images; save {text} to a file and pass that")
    else:
        path = Path(text)
    try:
        path = path.expanduser()
        _check_file(path)
        data = read_limited(path)  # a regular file only, at most max_file_bytes()
    except ImageError:
        raise
    except (OSError, ValueError, RuntimeError) as e:  # no permission, a NUL byte, ~nobody, ...
        raise ImageError(
            f"cannot read {text!r} ({type(e).__name__}: {e}); check the path and its permissions"
        ) from e
    return _decode(io.BytesIO(data), str(path), max_pixels, head=data[:8])


def _check_file(path: Path) -> None:
    """Refuse missing files, folders and empty files with advice."""
    if not path.exists():
        hint = ", or 'sample:NAME' for a bundled photo" if not path.suffix else ""
        raise ImageError(f"image file not found: {path} (check the path{hint})")
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image file; pass the files inside it")
    if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or device would block or never end
        raise ImageError(f"{path} is not a regular file (a FIFO, device or socket)")
    if path.stat().st_size == 0:
        raise ImageError(
            f"{path} is empty (0 bytes); it is not a valid image, re-save or re-copy it"
        )


def load_gray(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> Image.Image:
    """A mask file as a mode "L" image (no other conversion), under the same file and pixel
    limits as `load_image`, checked before anything is decoded."""
    path = Path(path).expanduser()
    try:
        _check_file(path)
        data = read_limited(path)
    except ImageError:
        raise
    except (OSError, ValueError) as e:
        raise ImageError(f"cannot read {str(path)!r} ({type(e).__name__}: {e})") from e
    return _decode(
        io.BytesIO(data), str(path), pixel_limit(max_pixels), data[:8], lambda im: im.convert("L")
    )


def _decode(
    fh: Any,
    label: str,
    max_pixels: int,
    head: bytes = b"",
    finish: Callable[[Image.Image], Image.Image] | None = None,
) -> Image.Image:
    """Open (header only), check the size, then fully decode the first frame to RGB (or
    with `finish`)."""
    try:
        check_ico_frames(fh, label, max_pixels)  # Pillow decodes an ICO frame on open
        with _pil_allows(max_pixels), Image.open(fh) as image:
            _check_pixels(image.size, max_pixels, label)
            _check_format(image.format, label)
            notes = []
            frames = getattr(image, "n_frames", 1)
            if isinstance(frames, int) and frames > 1:
                notes.append(f"{label} has {frames} frames; only the first is used")
                log.warning("%s", notes[-1])
                image.seek(0)
            image.load()
            rgb = finish(image) if finish else to_rgb(_exif_transpose(image))
    except ImageError:
        raise
    except Image.DecompressionBombError as e:  # over Pillow's guard, so over our limit too
        size = _header_size(fh, e)
        raise ImageError(
            f"{label} {_be(label)} too large to decode safely: {_too_many(size, max_pixels)}",
            hint=Hint("max-pixels"),
        ) from e
    except UnidentifiedImageError as e:
        raise ImageError(_not_an_image(label, head)) from e
    except Exception as e:  # Pillow's decoders raise many types (OSError, struct.error, ...)
        raise ImageError(_damaged(label, e)) from e
    if notes:
        rgb.info[NOTES] = notes
    return rgb


def _check_format(name: str | None, label: str) -> None:
    """Refuse image formats cnnvis does not read: their headers may not tell the size that
    decoding makes (an ICNS file names 1024 x 1024 and may hold a far larger PNG), so the
    pixel limit could not be checked before decoding."""
    if name not in ACCEPTED_FORMATS:
        raise ImageError(
            f"{label} is a {name or 'unknown'} image; cnnvis reads "
            f"{', '.join(sorted(ACCEPTED_FORMATS))}: convert it to PNG or JPEG"
        )


@contextmanager
def _pil_allows(max_pixels: int) -> Iterator[None]:
    """Lift Pillow's decompression-bomb guard (it refuses > 2 x `Image.MAX_IMAGE_PIXELS`) to
    `max_pixels` while one image is opened, when the caller allows more than Pillow does; our
    own check from the header then is the limit. The global is restored under a lock."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None or max_pixels <= 2 * limit:
        yield
        return
    with _PIL_LIMIT_LOCK:
        previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _header_size(fh: Any, error: Exception) -> tuple[int, int]:
    """The (width, height) in the header of an image Pillow refused as a decompression bomb
    (opened again with its guard off; nothing is decoded)."""
    with _PIL_LIMIT_LOCK:
        previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            fh.seek(0)
            with Image.open(fh) as image:
                return image.size
        except Exception:
            raise ImageError(
                f"the image is too large to decode safely ({error}); downscale it first",
                hint=Hint("max-pixels"),
            ) from error
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _be(label: str) -> str:
    """'is', or 'are' for a plural subject such as "the image bytes"."""
    return "are" if label.endswith("bytes") else "is"


def _damaged(label: str, error: Exception) -> str:
    return (
        f"{label} {_be(label)} damaged or truncated and cannot be decoded ({type(error).__name__}: "
        f"{error}); re-download or re-export it"
    )


def _not_an_image(label: str, head: bytes) -> str:
    """The message for a file PIL does not recognise, naming a PDF when it is one."""
    if head.startswith(b"%PDF"):
        return f"{label} {_be(label)} a PDF document, not an image; export the page as PNG or JPEG"
    return (
        f"{label} {_be(label)} not an image in a format cnnvis can read (unknown or unsupported); "
        "convert it to PNG or JPEG"
    )


def _check_pixels(size: tuple[int, int], max_pixels: int, label: str) -> None:
    """Refuse empty images and images with more than `max_pixels` pixels (from the header,
    before decoding)."""
    width, height = size
    if width < 1 or height < 1:
        raise ImageError(
            f"{label} {_be(label)} {width}x{height} pixels, which is empty; pass a real image"
        )
    if width * height > max_pixels:
        raise ImageError(
            f"{label} {_be(label)} {_too_many(size, max_pixels)}", hint=Hint("max-pixels")
        )


def _too_many(size: tuple[int, int], max_pixels: int) -> str:
    width, height = size
    return (
        f"{width}x{height} = {width * height:,} pixels, more than the limit of {max_pixels:,}; "
        "downscale it first"
    )


def _exif_transpose(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; broken EXIF is logged and ignored."""
    try:
        if image.getexif().get(EXIF_ORIENTATION, 1) in (None, 1):
            return image
        return ImageOps.exif_transpose(image) or image
    except Exception as e:  # malformed EXIF must not make the image unusable
        log.warning("ignoring unreadable EXIF orientation: %s", e)
        return image


# ----------------------------------------------------------------------------- arrays


def _from_array(array: np.ndarray, max_pixels: int) -> Image.Image:
    """An HxW / HxWxC array (uint8, uint16, bool, float in [0, 1]) -> RGB."""
    array = channels_last_array(array)
    _check_pixels((array.shape[1], array.shape[0]), max_pixels, "the array")
    data = array_to_uint8(array)
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[:, :, 0]
    if data.ndim == 2:
        return gray_array_to_rgb(data)
    if data.shape[2] == 4:
        return over_white(Image.fromarray(np.ascontiguousarray(data), mode="RGBA"))
    return Image.fromarray(np.ascontiguousarray(data), mode="RGB")


def _sample_folder() -> Path | None:
    """scikit-image's bundled data folder, if scikit-image is installed."""
    try:
        import skimage.data
    except ImportError:
        return None
    return Path(os.path.dirname(skimage.data.__file__))
