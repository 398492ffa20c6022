"""Bad and unusual image files, through the library and the command line: each one is either
explained correctly or refused with an `ImageError` that says what was wrong and what to do,
and a refused file never stops the others (the web API: `test_hardening_web.py`).

The files are built here, small: a real 20000 x 20000 PNG of one grey (400 M pixels, ~0.4 MB
compressed), truncated JPEG and PNG, a PNG named .jpg and a JPEG named .png, text and a PDF, a
CMYK JPEG, 16-bit grey and 16-bit RGB PNGs, a palette PNG with a transparent entry, a 1 x 1
image, an animated GIF and JPEGs with EXIF orientations 3, 6 and 8.
"""

from __future__ import annotations

import io
import json
import logging
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from torch import nn

import cnnvis
from cnnvis.cli import main
from cnnvis.errors import ImageError
from cnnvis.images import NOTES, load_image
from cnnvis.model import LoadedModel, Preprocess

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


# ----------------------------------------------------------------------------- file makers


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(size: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png(width: int, height: int, depth: int, color: int, rows: Callable[[], bytes]) -> bytes:
    """A PNG written by hand: IHDR (bit depth, colour type), one IDAT of `rows()`, IEND."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", rows())
        + png_chunk(b"IEND", b"")
    )


def constant_grey_png(width: int, height: int, value: int = 128) -> bytes:
    """A real (fully decodable) 8-bit grey PNG of one value, compressed row by row."""

    def rows() -> bytes:
        row = b"\x00" + bytes([value]) * width  # filter type 0, then the pixels
        packer = zlib.compressobj(1)
        return b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    return png(width, height, 8, 0, rows)


def rgb48_png(pixels: list[tuple[int, int, int]]) -> bytes:
    """A one-row 16-bit-per-channel RGB PNG."""
    row = b"\x00" + b"".join(struct.pack(">HHH", *p) for p in pixels)
    return png(len(pixels), 1, 16, 2, lambda: zlib.compress(row))


def deep16_png(values: list[int]) -> bytes:
    return encode(Image.fromarray(np.array([values], dtype=np.uint16)), "PNG")


def cmyk_jpeg() -> bytes:
    """Left half white (no ink), right half cyan (full C), as PIL writes CMYK (Adobe) JPEGs."""
    image = Image.new("CMYK", (32, 16), (0, 0, 0, 0))
    image.paste((255, 0, 0, 0), (16, 0, 32, 16))
    return encode(image, "JPEG", quality=95)


def palette_with_transparency() -> bytes:
    image = Image.new("P", (2, 1), 0)
    image.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    image.putpixel((1, 0), 1)
    return encode(image, "PNG", transparency=1)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (8, 8), c) for c in (RED, GREEN, BLUE)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40)


def exif_jpeg(orientation: int) -> bytes:
    """40 x 20 stored: left half red, right half blue, with an EXIF orientation tag."""
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", exif=exif.tobytes(), quality=95)


def minimal_pdf() -> bytes:
    return b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n%%EOF\n"


HUGE_SIDE = 20_000

# name -> (file contents, words the message must contain: what was wrong, and what to do)
BAD: dict[str, tuple[Callable[[], bytes], tuple[str, ...]]] = {
    "zero.png": (lambda: b"", ("empty (0 bytes)", "re-save")),
    "truncated.jpg": (
        lambda: encode(noise(), "JPEG")[: len(encode(noise(), "JPEG")) // 2],
        ("damaged or truncated", "re-download"),
    ),
    "truncated.png": (
        lambda: encode(noise(), "PNG")[: len(encode(noise(), "PNG")) // 2],
        ("damaged or truncated", "re-download"),
    ),
    "notes.txt": (lambda: b"a shopping list, not a picture\n", ("not an image", "convert it")),
    "text_named.jpg": (lambda: b"plain text with a .jpg name\n", ("not an image", "convert it")),
    "paper.pdf": (minimal_pdf, ("a PDF document", "export the page as PNG or JPEG")),
    "huge.png": (
        lambda: constant_grey_png(HUGE_SIDE, HUGE_SIDE),
        ("20000x20000 = 400,000,000 pixels", "limit of 100,000,000", "downscale it first"),
    ),
}

# name -> (file contents, {(x, y): expected RGB}, size, tolerance for lossy formats)
GOOD: dict[str, tuple[Callable[[], bytes], dict[tuple[int, int], tuple[int, ...]], tuple, int]] = {
    "png_named.jpg": (
        lambda: encode(Image.new("RGB", (5, 4), (9, 8, 7)), "PNG"),
        {(0, 0): (9, 8, 7)},
        (5, 4),
        0,
    ),
    "jpeg_named.png": (
        lambda: encode(Image.new("RGB", (16, 16), (200, 40, 40)), "JPEG", quality=95),
        {(8, 8): (200, 40, 40)},
        (16, 16),
        6,
    ),
    "cmyk.jpg": (cmyk_jpeg, {(4, 8): WHITE, (28, 8): (0, 255, 255)}, (32, 16), 8),
    "deep16.png": (
        lambda: deep16_png([0, 257, 32896, 65535]),
        {(0, 0): (0, 0, 0), (1, 0): (1, 1, 1), (2, 0): (128, 128, 128), (3, 0): WHITE},
        (4, 1),
        0,
    ),
    "rgb48.png": (
        lambda: rgb48_png([(0, 0xFFFF, 0x8080), (0xFFFF, 0, 0)]),
        {(0, 0): (0, 255, 128), (1, 0): RED},
        (2, 1),
        0,
    ),
    "palette_alpha.png": (
        palette_with_transparency,
        {(0, 0): (10, 20, 30), (1, 0): WHITE},
        (2, 1),
        0,
    ),
    "one_pixel.png": (
        lambda: encode(Image.new("RGB", (1, 1), (200, 10, 30)), "PNG"),
        {(0, 0): (200, 10, 30)},
        (1, 1),
        0,
    ),
    "animated.gif": (animated_gif, {(4, 4): RED}, (8, 8), 0),
    # EXIF 3: rotate 180 (red to the right); 6: 90 clockwise (red on top); 8: 90
    # counter-clockwise (red at the bottom)
    "exif3.jpg": (lambda: exif_jpeg(3), {(35, 10): RED, (5, 10): BLUE}, (40, 20), 60),
    "exif6.jpg": (lambda: exif_jpeg(6), {(10, 5): RED, (10, 35): BLUE}, (20, 40), 60),
    "exif8.jpg": (lambda: exif_jpeg(8), {(10, 35): RED, (10, 5): BLUE}, (20, 40), 60),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hardening_images")
    for name, (make, *_) in {**BAD, **GOOD}.items():
        (root / name).write_bytes(make())
    return root


class SmallCNN(nn.Sequential):
    """conv (stride 4) - ReLU - conv - ReLU - GAP - linear, seeded: cheap at 224 px."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__(
            nn.Conv2d(3, 6, 5, stride=4),
            nn.ReLU(),
            nn.Conv2d(6, 8, 3, stride=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 4),
        )


@pytest.fixture(scope="module")
def small_model() -> LoadedModel:
    return LoadedModel(SmallCNN().eval(), name="small", preprocess=Preprocess(40, 32))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """The same architecture as a pickled file for `--model` (nn.Sequential: no custom class)."""
    path = tmp_path_factory.mktemp("model") / "small.pt"
    torch.save(nn.Sequential(*SmallCNN()), path)
    return path


def close(pixel: tuple[int, ...], expected: tuple[int, ...], tolerance: int) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


# ----------------------------------------------------------------------------- library


@pytest.mark.parametrize("name", list(BAD))
def test_bad_files_are_refused_with_advice(folder: Path, name: str):
    with pytest.raises(ImageError) as caught:
        load_image(folder / name)
    message = str(caught.value)
    for words in BAD[name][1]:
        assert words in message, message


def test_the_huge_image_is_refused_from_its_header(folder: Path, monkeypatch):
    """Not decoded (Pillow's own guard stops it at the header), so no 400 MB allocation."""

    def no_decode(self):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    with pytest.raises(ImageError, match="too large to decode safely: 20000x20000"):
        load_image(folder / "huge.png")
    with pytest.raises(ImageError, match="100x100 = 10,000 pixels, more than the limit of 1,000"):
        load_image(constant_grey_png(100, 100), max_pixels=1000)  # within Pillow's guard


@pytest.mark.parametrize("name", list(GOOD))
def test_unusual_files_load_correctly(folder: Path, name: str):
    _, pixels, size, tolerance = GOOD[name]
    image = load_image(folder / name)
    assert image.mode == "RGB" and image.size == size
    for xy, expected in pixels.items():
        assert close(image.getpixel(xy), expected, tolerance), (xy, image.getpixel(xy))


def test_animation_says_only_the_first_frame_is_used(folder: Path, small_model, caplog):
    with caplog.at_level(logging.WARNING, logger="cnnvis.images"):
        image = load_image(folder / "animated.gif")
    assert image.info[NOTES] == [f"{folder / 'animated.gif'} has 3 frames; only the first is used"]
    assert "only the first is used" in caplog.text
    result = cnnvis.explain(small_model, folder / "animated.gif", "gradient")
    assert any("3 frames; only the first" in note for note in result.notes)


@pytest.mark.parametrize("name", ["cmyk.jpg", "rgb48.png", "palette_alpha.png", "one_pixel.png"])
def test_unusual_files_are_explained(folder: Path, small_model, name: str):
    """Through `explain` like any photo: the picture the model saw is the loaded one, resized."""
    for method in ("gradient", "grad-cam"):
        result = cnnvis.explain(small_model, folder / name, method)
        assert torch.isfinite(result.map).all()
        assert result.images.shape == (1, 3, 32, 32)
    expected = small_model.preprocess.to_display(load_image(folder / name))
    torch.testing.assert_close(result.images[0], expected)


def test_a_batch_with_one_bad_file_fails_as_a_whole_in_the_library(folder: Path, small_model):
    """The library call is all-or-nothing (the CLI and batch runs go on per file)."""
    with pytest.raises(ImageError, match=r"truncated.png"):
        cnnvis.explain(small_model, [folder / "one_pixel.png", folder / "truncated.png"])


# ----------------------------------------------------------------------------- command line


def test_cli_classifies_the_good_files_and_reports_each_bad_one(folder, model_file, capsys):
    files = [str(folder / name) for name in [*GOOD, *BAD]]
    code = main(
        [
            "classify",
            *files,
            "--model",
            str(model_file),
            "--trust-model-file",
            "--json",
            "--top-k",
            "2",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1  # some images failed, the others were classified
    summary = json.loads(out)
    assert [Path(i["source"]).name for i in summary["images"]] == list(GOOD)
    assert [Path(f["source"]).name for f in summary["failed"]] == list(BAD)
    errors = [line for line in err.splitlines() if line.startswith("cnnvis: error: ")]
    assert len(errors) == len(BAD) and "Traceback" not in err
    for line, (name, (_, words)) in zip(errors, BAD.items(), strict=True):
        assert name in line
        for word in words:
            assert word in line.replace("raise --max-pixels", "raise max_pixels"), line
    assert "only the first is used" in err  # the GIF's warning reaches the terminal


def test_cli_explains_unusual_files(folder, model_file, tmp_path, capsys):
    files = [str(folder / n) for n in ("cmyk.jpg", "exif6.jpg", "animated.gif", "zero.png")]
    argv = [
        "explain",
        *files,
        "--model",
        str(model_file),
        "--trust-model-file",
        "--method",
        "gradient,grad-cam",
    ]
    code = main([*argv, "--out", str(tmp_path), "--json"])
    out, err = capsys.readouterr()
    assert code == 1, err
    summary = json.loads(out)
    assert len(summary["images"]) == 3 and len(summary["failed"]) == 1
    for stem in ("cmyk", "exif6", "animated"):
        assert (tmp_path / stem / "figure.png").is_file()


def test_cli_pixel_limit_flag_and_environment(folder, model_file, capsys, monkeypatch):
    image = str(folder / "palette_alpha.png")  # 2 pixels
    argv = ["classify", image, "--model", str(model_file), "--trust-model-file"]
    assert main([*argv, "--max-pixels", "1"]) == ImageError.exit_code
    err = capsys.readouterr().err
    assert (
        "2x1 = 2 pixels, more than the limit of 1; downscale it first or raise --max-pixels" in err
    )
    monkeypatch.setenv("CNNVIS_MAX_PIXELS", "1")
    assert main(argv) == ImageError.exit_code
    assert "more than the limit of 1;" in capsys.readouterr().err
    assert main([*argv, "--max-pixels", "2"]) == 0  # the flag wins over the environment
    monkeypatch.setenv("CNNVIS_MAX_PIXELS", "lots")
    assert main(argv) == ImageError.exit_code
    assert "CNNVIS_MAX_PIXELS='lots' is not a positive whole number" in capsys.readouterr().err
    assert main([*argv, "--max-pixels", "0"]) == 2  # argparse: must be at least 1
