"""A batch run names every file that failed: as it fails (a warning on stderr) and all of them
again in the summary at the end (stderr, the JSON summary and run.json)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pyarrow")

from cnnvis import batch
from cnnvis.cli import main
from cnnvis.model import LoadedModel, Preprocess

from conftest import TinyCNN

R18 = ["--model", "torchvision:resnet18", "--weights", "none", "--seed", "0"]


def photos(root: Path) -> Path:
    """good.png, a truncated JPEG (damaged.jpg) and a text file named like an image."""
    root.mkdir(parents=True)
    pixels = (np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(root / "good.png")
    Image.fromarray(pixels).save(root / "whole.jpg")
    data = (root / "whole.jpg").read_bytes()
    (root / "whole.jpg").unlink()
    (root / "damaged.jpg").write_bytes(data[: len(data) // 2])
    (root / "notes.png").write_text("not an image at all")
    return root


def test_library_summary_lists_the_failed_files(tmp_path, caplog):
    root = photos(tmp_path / "in")
    model = LoadedModel(
        TinyCNN(classes=5).eval(), name="tiny", preprocess=Preprocess(resize_size=32, crop_size=32)
    )
    with caplog.at_level(logging.WARNING, logger="cnnvis"):
        summary = batch.run(root, tmp_path / "out", model, ["grad-cam"], progress=False)
    assert (summary.done, summary.failed) == (1, 2)
    failed = {Path(f["source"]).name: f["error"] for f in summary.failures}
    assert set(failed) == {"damaged.jpg", "notes.png"}
    assert "are damaged or truncated" in failed["damaged.jpg"]
    assert "is damaged" not in failed["damaged.jpg"]  # not "the image bytes is damaged"
    assert "not an image" in failed["notes.png"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(Path(m.split(": ")[0]).name for m in warned) == ["damaged.jpg", "notes.png"]
    run_json = json.loads((tmp_path / "out" / "run.json").read_text())
    assert len(run_json["summary"]["failures"]) == 2


def test_cli_names_each_failed_file_and_sums_them_up(tmp_path, capsys):
    root = photos(tmp_path / "in")
    argv = ["batch", str(root), "--out", str(tmp_path / "out"), *R18, "--method", "grad-cam"]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 1 and "1 done" in out and "2 failed" in out
    summary = err[err.index("cnnvis: 2 of 3 files failed:") :]
    running = err[: err.index("cnnvis: 2 of 3 files failed:")]
    for name in ("damaged.jpg", "notes.png"):
        assert f"{root / name}: the image bytes" in running  # said as it failed
        assert f"  {root / name}: the image bytes" in summary  # and in the summary
    assert "good.png" not in err
