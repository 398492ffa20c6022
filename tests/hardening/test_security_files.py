"""Untrusted files and folders: only regular files are read, with a byte limit; folder walks end
on symlink loops; the pixel limit applies before an ICO frame or a mask is decoded."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnvis.batch.inputs import discover
from cnnvis.errors import ImageError
from cnnvis.files import read_limited
from cnnvis.images import load_image

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")


def picture(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rng.random((20, 24, 3)) * 255).astype(np.uint8)).save(path)
    return path


def in_subprocess(code: str, timeout: float = 60) -> str:
    """Run `code` in a fresh Python (so a regression that hangs cannot hang the suite)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# ----------------------------------------------------------------------------- regular files


def test_read_limited_refuses_devices_fifos_and_big_files(tmp_path):
    fifo = tmp_path / "b.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="FIFO"):
        read_limited(fifo)
    with pytest.raises(ImageError, match="character device"):
        read_limited("/dev/zero")
    big = tmp_path / "big.png"
    big.write_bytes(b"x" * 2000)
    with pytest.raises(ImageError, match="file limit of 1,000 bytes"):
        read_limited(big, 1000)
    assert read_limited(big, 2000) == b"x" * 2000
    link = tmp_path / "link.png"
    link.symlink_to(big)
    assert len(read_limited(link)) == 2000  # a symlink to a regular file is fine


def test_load_image_on_a_fifo_fails_at_once(tmp_path):
    fifo = tmp_path / "b.png"
    os.mkfifo(fifo)
    out = in_subprocess(
        "from cnnvis.images import load_image\n"
        "try:\n"
        f"    load_image({str(fifo)!r})\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n",
        timeout=60,
    )
    assert out.startswith("ImageError") and "regular file" in out


def test_batch_reports_fifo_device_and_huge_files_and_indexes_the_rest(tmp_path):
    pytest.importorskip("pyarrow")
    root = tmp_path / "photos"
    picture(root / "good.png")
    sparse = tmp_path / "huge.bin"
    with open(sparse, "wb") as fh:
        fh.truncate(10 * 2**30)  # 10 GiB, sparse
    (root / "huge.png").symlink_to(sparse)
    (root / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(root / "b.png")
    out = tmp_path / "out"
    code = f"""
import torch
from cnnvis import batch
from cnnvis.model import LoadedModel, Preprocess
net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
lm = LoadedModel(net, name="tiny", preprocess=Preprocess(resize_size=16, crop_size=16),
    categories=["a", "b", "c"])
s = batch.run({str(root)!r}, {str(out)!r}, lm, methods=["gradient"], workers=0, progress=False)
print(s.done, s.failed)
for r in batch.read_index({str(out)!r}).to_pylist():
    print(r["relpath"], r["error_type"], "|", r["error"])
"""
    start = time.perf_counter()
    lines = in_subprocess(code, timeout=120).splitlines()
    assert time.perf_counter() - start < 110
    assert lines[0] == "1 3"
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["good.png"].split()[1] == "None"
    assert "regular file" in rows["b.png"] and "FIFO" in rows["b.png"]
    assert "character device" in rows["zero.png"]
    assert "file limit" in rows["huge.png"]


# ----------------------------------------------------------------------------- folder walks


def test_a_symlink_loop_is_walked_once(tmp_path):
    root = tmp_path / "photos"
    picture(root / "top.png")
    picture(root / "loop" / "inner.png", 1)
    (root / "loop" / "self").symlink_to(".")
    (root / "loop" / "up").symlink_to("..")
    code = (
        "from cnnvis.batch.inputs import discover\n"
        f"print([item.relpath for item in discover({str(root)!r}).items])\n"
    )
    start = time.perf_counter()
    out = in_subprocess(code, timeout=60)  # the old walk never ended: keep the suite safe
    assert time.perf_counter() - start < 30
    assert out.strip() == "['loop/inner.png', 'top.png']"


def test_a_symlinked_folder_is_followed(tmp_path):
    picture(tmp_path / "elsewhere" / "far.png")
    root = tmp_path / "photos"
    picture(root / "near.png")
    (root / "linked").symlink_to(tmp_path / "elsewhere")
    assert [item.relpath for item in discover(root).items] == ["linked/far.png", "near.png"]


def test_evaluate_walks_a_folder_like_batch(tmp_path):
    """`evaluate`'s folder listing: a symlink loop walked once, a symlinked folder followed,
    hidden files left out (the old `rglob` did not follow the link)."""
    from cnnvis.evaluate.inputs import image_sources

    picture(tmp_path / "elsewhere" / "far.png")
    root = tmp_path / "photos"
    picture(root / "top.png")
    picture(root / "loop" / "inner.png", 1)
    picture(root / ".hidden.png", 2)
    (root / "loop" / "self").symlink_to(".")
    (root / "loop" / "up").symlink_to("..")
    (root / "linked").symlink_to(tmp_path / "elsewhere")
    names = [Path(name).relative_to(root).as_posix() for name, _ in image_sources(root)]
    assert names == ["linked/far.png", "loop/inner.png", "top.png"]


def test_evaluate_reports_an_unreadable_image_and_goes_on(tmp_path):
    """A FIFO named like an image in an evaluated folder is reported (a note, a warning) and
    the other images are evaluated; no image at all readable is an ImageError."""
    from cnnvis import evaluate
    from cnnvis.model import LoadedModel, Preprocess

    from conftest import TinyCNN

    root = tmp_path / "photos"
    picture(root / "good.png")
    os.mkfifo(root / "stuck.png")
    model = LoadedModel(
        TinyCNN().eval(), name="tiny", preprocess=Preprocess(resize_size=16, crop_size=16)
    )
    fast = {"steps": 2, "random_draws": 1, "batch_size": 8}
    result = evaluate(model, root, ["gradient"], ["deletion"], **fast)
    assert [Path(name).name for name in result.images] == ["good.png"]
    assert any("stuck.png" in note and "skipped" in note for note in result.notes)
    assert result.scores and {s.image for s in result.scores} == set(result.images)
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    os.mkfifo(only_bad / "stuck.png")
    with pytest.raises(ImageError, match="none of the 1 images"):
        evaluate(model, only_bad, ["gradient"], ["deletion"], **fast)


# ----------------------------------------------------------------------------- pixel limits


def png_bytes(width: int, height: int) -> bytes:
    """A gray PNG of zeros, built without holding its pixels in memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    compressor = zlib.compressobj(9)
    rows = b"\x00" * ((width + 1) * 500)
    parts = [compressor.compress(rows) for _ in range(height // 500)]
    parts.append(compressor.compress(b"\x00" * ((width + 1) * (height % 500))))
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )


def ico_bytes(png: bytes) -> bytes:
    """An ICO whose one frame (said to be 256 x 256 in the header) is `png`."""
    entry = struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png), 6 + 16)
    return struct.pack("<HHH", 0, 1, 1) + entry + png


def test_an_ico_bomb_is_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.ico"
    bomb.write_bytes(ico_bytes(png_bytes(13000, 13000)))
    assert bomb.stat().st_size < 2 * 2**20
    out = in_subprocess(
        "import resource\n"
        "from cnnvis.images import load_image\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        f"    load_image({str(bomb)!r})\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print((after - before) // 1024)\n"
    )
    message, grown_mib = out.rsplit("\n", 2)[:2]
    assert message.startswith("ImageError") and "13000x13000" in message
    assert "100,000,000" in message
    assert int(grown_mib) < 60  # decoding the frame would take 169 MB and more


def test_an_icns_whose_header_lies_is_refused_before_decoding(tmp_path):
    """An ICNS entry says 1024 x 1024 and holds a 12000 x 12000 PNG (144 M pixels, over the
    100 M limit): formats whose header may not tell the decoded size are refused unopened."""
    png = png_bytes(12000, 12000)
    entry = b"ic10" + struct.pack(">I", 8 + len(png)) + png
    bomb = tmp_path / "bomb.icns"
    bomb.write_bytes(b"icns" + struct.pack(">I", 8 + len(entry)) + entry)
    out = in_subprocess(
        "import resource\n"
        "from cnnvis.images import load_image\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        f"    load_image({str(bomb)!r})\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print((after - before) // 1024)\n"
    )
    message, grown_mib = out.rsplit("\n", 2)[:2]
    assert message.startswith("ImageError") and "ICNS" in message and "PNG" in message
    assert int(grown_mib) < 60  # decoding the PNG would take 144 MB and more


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM"])
def test_the_usual_formats_still_load(tmp_path, fmt):
    path = tmp_path / f"photo.{fmt.lower()}"
    Image.new("RGB", (20, 10), (200, 30, 30)).save(path, format=fmt)
    assert load_image(path).size == (20, 10)


def test_a_small_ico_still_loads(tmp_path):
    path = tmp_path / "icon.ico"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(path, sizes=[(32, 32), (16, 16)])
    assert load_image(path).size == (32, 32)


def test_an_over_limit_mask_is_a_typed_error_naming_the_limit(tmp_path, monkeypatch):
    from cnnvis.evaluate.errors import EvaluationError
    from cnnvis.evaluate.localisation import Boxes
    from cnnvis.model import Preprocess

    monkeypatch.setenv("CNNVIS_MAX_PIXELS", "10000")
    mask = tmp_path / "mask.png"
    Image.new("L", (200, 100)).save(mask)
    boxes = Boxes(images={}, space="input")
    with pytest.raises(EvaluationError, match="limit of 10,000"):
        boxes._file_mask(mask, Preprocess(resize_size=16, crop_size=16), (16, 16))
