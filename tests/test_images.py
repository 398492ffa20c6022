"""Tests for cnnvis.images: every source type and mode to RGB, EXIF, frames, and bad inputs."""

from __future__ import annotations

import io
import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from cnnvis.errors import ImageError
from cnnvis.images import list_samples, load_image, load_images, sample_path, to_rgb


def _pixel(image: Image.Image, xy: tuple[int, int] = (0, 0)) -> tuple[int, int, int]:
    assert image.mode == "RGB"
    return image.getpixel(xy)


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# ----------------------------------------------------------------------------- samples


def test_list_samples_has_the_photos():
    samples = list_samples()
    for name in ("cat", "coffee", "rocket", "astronaut", "motorcycle", "camera"):
        assert name in samples and samples[name].is_file()
    assert samples["cat"].name == "chelsea.png"
    assert all(path.is_file() for path in samples.values())


def test_sample_loads_as_rgb():
    cat = load_image("sample:cat")
    assert cat.mode == "RGB" and cat.size == (451, 300)
    camera = load_image("sample:camera")  # a grayscale file
    assert camera.mode == "RGB" and camera.size == (512, 512)
    r, g, b = _pixel(camera, (100, 100))
    assert r == g == b


def test_sample_alias_and_case():
    assert sample_path("Chelsea") == sample_path("cat")
    assert load_image("SAMPLE:coffee").size == (600, 400)


def test_unknown_sample_suggests_names():
    with pytest.raises(ImageError, match="did you mean: cat"):
        load_image("sample:cta")


def test_sample_with_alpha_is_composited_on_white():
    horse = load_image("sample:horse")  # RGBA, transparent background
    assert horse.mode == "RGB"
    assert _pixel(horse, (0, 0)) == (255, 255, 255)


# ----------------------------------------------------------------------------- modes


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (Image.new("1", (2, 2), 1), (255, 255, 255)),
        (Image.new("L", (2, 2), 100), (100, 100, 100)),
        (Image.new("LA", (2, 2), (100, 255)), (100, 100, 100)),
        (Image.new("LA", (2, 2), (100, 0)), (255, 255, 255)),
        (Image.new("La", (2, 2), (100, 255)), (100, 100, 100)),
        (Image.new("RGBA", (2, 2), (255, 0, 0, 255)), (255, 0, 0)),
        (Image.new("RGBA", (2, 2), (255, 0, 0, 0)), (255, 255, 255)),
        (Image.new("CMYK", (2, 2), (0, 0, 0, 0)), (255, 255, 255)),
        (Image.new("CMYK", (2, 2), (255, 0, 0, 0)), (0, 255, 255)),
        (Image.new("I;16", (2, 2), 65535), (255, 255, 255)),
        (Image.new("I;16", (2, 2), 257), (1, 1, 1)),
        (Image.new("I;16", (2, 2), 32896), (128, 128, 128)),
        (Image.new("I", (2, 2), 65535), (255, 255, 255)),
        (Image.new("I", (2, 2), 200), (200, 200, 200)),
        (Image.new("F", (2, 2), 0.5), (128, 128, 128)),
        (Image.new("F", (2, 2), 1.0), (255, 255, 255)),
        (Image.new("YCbCr", (2, 2), (255, 128, 128)), (255, 255, 255)),
    ],
    ids=lambda v: getattr(v, "mode", ""),
)
def test_every_mode_becomes_rgb(image, expected):
    rgb = load_image(image)
    assert rgb.mode == "RGB" and rgb.size == image.size
    assert _pixel(rgb) == expected


def test_rgba_half_alpha_blends_with_white():
    rgb = load_image(Image.new("RGBA", (1, 1), (255, 0, 0, 128)))
    r, g, b = _pixel(rgb)
    assert r == 255 and 125 <= g <= 128 and g == b


def test_palette_and_palette_transparency():
    palette = Image.new("P", (2, 1), 0)
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.putpixel((1, 0), 1)
    assert _pixel(load_image(palette), (0, 0)) == (10, 20, 30)
    assert _pixel(load_image(palette), (1, 0)) == (200, 100, 50)
    palette.info["transparency"] = 1
    assert _pixel(load_image(palette), (1, 0)) == (255, 255, 255)
    assert _pixel(load_image(palette), (0, 0)) == (10, 20, 30)


def test_16bit_png_file_is_scaled_not_clipped(tmp_path: Path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)  # written as a 16-bit grayscale PNG
    with Image.open(path) as check:
        assert check.mode.startswith("I")
    rgb = load_image(path)
    assert [_pixel(rgb, (x, 0))[0] for x in range(4)] == [0, 1, 128, 255]


def test_to_rgb_returns_a_copy():
    original = Image.new("RGB", (2, 2), (1, 2, 3))
    converted = to_rgb(original)
    converted.putpixel((0, 0), (9, 9, 9))
    assert original.getpixel((0, 0)) == (1, 2, 3)


# ----------------------------------------------------------------------------- arrays


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.full((3, 4), 7, dtype=np.uint8), (7, 7, 7)),
        (np.full((3, 4, 1), 7, dtype=np.uint8), (7, 7, 7)),
        (np.full((3, 4, 3), (1, 2, 3), dtype=np.uint8), (1, 2, 3)),
        (np.full((3, 4, 4), (1, 2, 3, 255), dtype=np.uint8), (1, 2, 3)),
        (np.full((3, 4, 4), (1, 2, 3, 0), dtype=np.uint8), (255, 255, 255)),
        (np.full((3, 4), 65535, dtype=np.uint16), (255, 255, 255)),
        (np.full((3, 4, 3), 257, dtype=np.uint16), (1, 1, 1)),
        (np.ones((3, 4), dtype=bool), (255, 255, 255)),
        (np.full((3, 4, 3), 0.5, dtype=np.float32), (128, 128, 128)),
        (np.full((3, 4), 1.0, dtype=np.float64), (255, 255, 255)),
        (np.full((3, 4, 3), 200, dtype=np.int64), (200, 200, 200)),
    ],
    ids=lambda v: f"{v.dtype}{v.shape}" if isinstance(v, np.ndarray) else "",
)
def test_arrays_become_rgb(array, expected):
    rgb = load_image(array)
    assert rgb.size == (4, 3)
    assert _pixel(rgb, (2, 1)) == expected


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((3, 8, 8), dtype=np.uint8), "channels-first"),
        (np.zeros((8, 8, 2), dtype=np.uint8), "HxW or HxWxC"),
        (np.zeros((2, 2, 2, 3), dtype=np.uint8), "HxW or HxWxC"),
        (np.full((4, 4), 2.0, dtype=np.float32), r"\[0, 1\]"),
        (np.full((4, 4), np.nan, dtype=np.float32), "NaN"),
        (np.full((4, 4), 300, dtype=np.int32), "dtype"),
    ],
)
def test_bad_arrays_raise(array, match):
    with pytest.raises(ImageError, match=match):
        load_image(array)


def test_load_images_many_and_single():
    images = load_images(["sample:cat", np.zeros((2, 2), np.uint8), Image.new("L", (3, 3))])
    assert [im.mode for im in images] == ["RGB"] * 3
    assert len(load_images("sample:coffee")) == 1


def test_unsupported_source_type():
    with pytest.raises(ImageError, match="cannot load an image from a int"):
        load_image(3)


# ----------------------------------------------------------------------------- files


def test_bytes_and_path_objects(tmp_path: Path):
    data = _png_bytes(Image.new("RGB", (5, 4), (9, 8, 7)))
    assert _pixel(load_image(data)) == (9, 8, 7)
    path = tmp_path / "small.png"
    path.write_bytes(data)
    assert load_image(path).size == (5, 4)
    assert load_image(str(path)).size == (5, 4)


def test_exif_orientation_is_applied(tmp_path: Path):
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif.tobytes(), quality=95)
    loaded = load_image(path)
    assert loaded.size == (20, 40)
    top, bottom = _pixel(loaded, (10, 5)), _pixel(loaded, (10, 35))
    assert top[0] > 200 and top[2] < 60  # the red half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_animated_gif_uses_first_frame(tmp_path: Path, caplog):
    frames = [Image.new("RGB", (6, 6), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with caplog.at_level(logging.INFO, logger="cnnvis.images"):
        loaded = load_image(path)
    assert _pixel(loaded) == (255, 0, 0)
    assert "only the first" in caplog.text
    assert loaded.info["cnnvis_notes"] == [f"{path} has 3 frames; only the first is used"]


def test_missing_file():
    with pytest.raises(ImageError, match="not found"):
        load_image("/nonexistent/cat.png")


def test_directory(tmp_path: Path):
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_zero_byte_file(tmp_path: Path):
    path = tmp_path / "empty.png"
    path.touch()
    with pytest.raises(ImageError, match="empty"):
        load_image(path)
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(tmp_path: Path, fmt: str):
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    noise.save(buffer, format=fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="damaged or truncated"):
        load_image(path)


def test_text_and_pdf_are_not_images(tmp_path: Path):
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    with pytest.raises(ImageError, match="not an image"):
        load_image(text)
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    with pytest.raises(ImageError, match="PDF"):
        load_image(pdf)


def test_too_many_pixels_refused_before_decoding(tmp_path: Path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)

    def no_decode(self):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    with pytest.raises(ImageError, match="more than the limit"):
        load_image(path, max_pixels=1000)
    with pytest.raises(ImageError, match="more than the limit"):
        load_image(np.zeros((100, 100), np.uint8), max_pixels=1000)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size in its header and has (almost) no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_header_size_is_checked_before_decoding(tmp_path: Path):
    path = tmp_path / "large.png"
    path.write_bytes(_png_header_only(12_000, 10_000))  # 120 M pixels, under PIL's own limit
    with pytest.raises(ImageError, match="more than the limit of 100,000,000"):
        load_image(path)


def test_decompression_bomb_is_an_image_error(tmp_path: Path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(30_000, 30_000))  # past PIL's own guard (2 x 89 M)
    message = "too large to decode safely: 30000x30000 = 900,000,000 pixels, more than the limit"
    with pytest.raises(ImageError, match=message):
        load_image(path)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_max_pixels_above_pils_guard_lifts_it_for_that_call(monkeypatch):
    """`max_pixels` is the one limit: above Pillow's guard, the guard is lifted (and put back)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow refuses > 200 pixels
    data = _png_bytes(Image.new("RGB", (30, 10), (1, 2, 3)))  # 300 pixels
    with pytest.raises(ImageError, match="30x10 = 300 pixels, more than the limit of 250"):
        load_image(data, max_pixels=250)
    with pytest.raises(ImageError, match="too large to decode safely: 30x10 = 300 pixels"):
        load_image(data, max_pixels=150)  # Pillow's guard stops it first; our words
    assert _pixel(load_image(data, max_pixels=300)) == (1, 2, 3)
    assert Image.MAX_IMAGE_PIXELS == 100


def test_pixel_limit_from_the_environment(monkeypatch):
    data = _png_bytes(Image.new("RGB", (10, 10)))
    monkeypatch.setenv("CNNVIS_MAX_PIXELS", "99")
    with pytest.raises(ImageError, match="more than the limit of 99;"):
        load_image(data)
    assert load_image(data, max_pixels=100).size == (10, 10)  # the argument wins
    monkeypatch.setenv("CNNVIS_MAX_PIXELS", "1_000")
    assert load_image(data).size == (10, 10)
    monkeypatch.setenv("CNNVIS_MAX_PIXELS", "-5")
    with pytest.raises(ImageError, match="CNNVIS_MAX_PIXELS='-5' is not a positive whole number"):
        load_image(data)
    with pytest.raises(ImageError, match="max_pixels must be a positive whole number"):
        load_image(data, max_pixels=0)


def test_empty_images_and_unreadable_paths(tmp_path: Path):
    with pytest.raises(ImageError, match="0x3 pixels, which is empty"):
        load_image(Image.new("RGB", (0, 3)))
    with pytest.raises(ImageError, match=r"not found: cat.*check the path"):
        load_image("cat\x00.png")  # a NUL byte: no such file
    with pytest.raises(ImageError, match="cannot read"):
        load_image("x" * 5000 + ".png")
    with pytest.raises(ImageError, match=r"cannot read '~no-such-user-0/cat.png'"):
        load_image("~no-such-user-0/cat.png")


def test_a_lazily_opened_damaged_file_is_an_image_error(tmp_path: Path):
    data = _png_bytes(
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    )
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with Image.open(path) as lazy, pytest.raises(ImageError, match="damaged or truncated"):
        load_image(lazy)  # PIL decodes only now


def test_urls_are_not_fetched():
    with pytest.raises(ImageError, match="does not download"):
        load_image("https://example.com/cat.jpg")
