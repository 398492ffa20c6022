"""The HTML report: self-contained (inline CSS, data URIs), escaped, links relative."""

from __future__ import annotations

import base64
import io
import re

from PIL import Image

from cnnvis.explanation import Prediction
from cnnvis.html import data_uri, href, predictions_table
from cnnvis.run_report import write_report


def _png(path, colour=(200, 30, 30), size=(8, 6)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _entry(folder: str, source: str) -> dict:
    return {
        "source": source,
        "folder": folder,
        "target": {"index": 1, "name": "b<b>", "probability": 0.5},
        "predictions": [
            {"index": 1, "name": "b<b>", "probability": 0.5},
            {"index": 0, "name": "a", "probability": 0.25},
        ],
        "maps": [
            {
                "method": "grad-cam",
                "layer": "layer4",
                "png": "grad-cam@layer4.png",
                "signed_png": "grad-cam@layer4.signed.png",
                "display": "over the image",
            }
        ],
        "files": {
            "input": "input.png",
            "figure": "figure.png",
            "maps": "maps.npz",
            "manifest": "manifest.json",
        },
    }


def test_report_embeds_images_and_escapes_text(tmp_path):
    folder = tmp_path / "my image"
    for name in ("input.png", "figure.png", "grad-cam@layer4.png", "grad-cam@layer4.signed.png"):
        _png(folder / name)
    (folder / "maps.npz").write_bytes(b"")
    (folder / "manifest.json").write_text("{}")
    run = {"command": "explain", "model": "m", "methods": ["grad-cam"], "argv": ["explain", "x"]}
    failed = [{"source": "<bad>.jpg", "error": "not an image"}]
    path = write_report(tmp_path, run, [_entry("my image", "<script>alert(1)</script>")], failed)
    text = path.read_text()
    assert path == tmp_path / "report.html"
    assert "<script>" not in text and "&lt;script&gt;" in text and "b&lt;b&gt;" in text
    assert "&lt;bad&gt;.jpg" in text and "not an image" in text
    images = re.findall(r"<img [^>]*src='([^']+)'", text)
    assert len(images) == 4 and all(src.startswith("data:image/png;base64,") for src in images)
    decoded = Image.open(io.BytesIO(base64.b64decode(images[0].split(",", 1)[1])))
    assert decoded.size == (8, 6)
    assert "href='my%20image/maps.npz'" in text and "href='my%20image/manifest.json'" in text
    assert "<style>" in text and "http" not in text.replace("http-equiv", "")
    assert "<code>cnnvis explain x</code>" in text


def test_missing_file_is_reported_not_raised(tmp_path):
    entry = _entry("gone", "x.png")
    text = write_report(tmp_path, {"command": "explain"}, [entry]).read_text()
    assert "missing: gone/figure.png" in text


def test_predictions_table_marks_the_target():
    preds = [Prediction(3, "cat", 0.75), Prediction(1, "dog", 0.2)]
    table = predictions_table(preds, target=1)
    rows = re.findall(r"<tr[^>]*>", table)
    assert rows[1] == "<tr>" and rows[2] == '<tr class="target">'
    assert "75.0%" in table and "width:90px" in table


def test_small_helpers(tmp_path):
    assert data_uri(b"ab", "text/plain") == "data:text/plain;base64,YWI="
    assert href("a b/c@d.png") == "a%20b/c%40d.png"


def test_large_pictures_are_embedded_as_thumbnails_linking_the_full_png(tmp_path):
    """A sweep over many layers made a 35 MB report: PNGs over EMBED_MAX_BYTES are embedded
    as a JPEG thumbnail (at most THUMB_MAX_SIDE px) that links the full PNG; small ones as
    they are."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from cnnvis import run_report

    rng = np.random.default_rng(0)
    big = tmp_path / "grid.png"
    Image.fromarray((rng.random((1800, 1200, 3)) * 255).astype(np.uint8)).save(big)
    small = tmp_path / "map.png"
    Image.new("RGB", (64, 64), (10, 20, 30)).save(small)
    assert big.stat().st_size > run_report.EMBED_MAX_BYTES
    tag = run_report._img(tmp_path, Path("grid.png"), "grid", "full")
    assert "href='grid.png'" in tag and "data:image/jpeg;base64," in tag
    data = base64.b64decode(tag.split("base64,", 1)[1].split("'", 1)[0])
    thumb = Image.open(io.BytesIO(data))
    assert max(thumb.size) <= run_report.THUMB_MAX_SIDE and len(data) < big.stat().st_size / 4
    assert "data:image/png;base64," in run_report._img(tmp_path, Path("map.png"), "m", "map")
