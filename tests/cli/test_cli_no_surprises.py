"""The command line says what it did: no silently skipped method, no unnamed failed file, the
explained class on stdout, folders taken as image lists."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
from PIL import Image

from cnnvis.cli import main

R18 = ["--model", "torchvision:resnet18", "--weights", "none"]


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_unknown_method_parameter_stops_the_run(tmp_path, capsys):
    """Not a warning, a skipped method and exit 0: exit 8 before anything is loaded, naming
    the parameters the method has."""
    out = tmp_path / "out"
    argv = ["explain", *R18, "--param", "grad-cam.foo=3", "--out", str(out)]
    code, _, err = run(capsys, argv)
    assert code == 9, err
    assert "grad-cam has no parameter 'foo'; it takes no parameters" in err
    assert not out.exists()
    argv = ["explain", *R18, "--method", "rise", "--param", "rise.mask=10", "--out", str(out)]
    code, _, err = run(capsys, argv)
    assert code == 9 and "did you mean masks?" in err and "cells, p, fill" in err


def test_bad_param_spelling_is_a_param_error(capsys):
    from cnnvis.cli.common import parse_params
    from cnnvis.errors import ParamError

    code, _, err = run(capsys, ["explain", "--method", "grad-cam", "--param", "steps=3"])
    assert code == 9 and "METHOD.NAME=VALUE" in err
    with pytest.raises(ParamError, match="not in --method"):
        parse_params(["rise.masks=10"], ["grad-cam"])


def test_stdout_names_the_class_explained(tmp_path, capsys):
    """A class outside the top-k table is still named, with its index and probability."""
    argv = ["explain", "sample:cat", "sample:coffee", *R18, "--method", "grad-cam"]
    argv += ["--target", "persian cat", "--top-k", "2", "--out", str(tmp_path / "a")]
    code, out, err = run(capsys, argv)
    assert code == 0, err
    lines = [line.strip() for line in out.splitlines() if "explained" in line]
    assert len(lines) == 2 and all(
        line.startswith("explained class 283 Persian cat (p=") for line in lines
    )
    argv = ["explain", "sample:cat", *R18, "--method", "grad-cam", "--out", str(tmp_path / "b")]
    code, out, err = run(capsys, argv)
    top1 = out.splitlines()[2].split()  # the table's first row: 1 NAME... INDEX P
    assert code == 0 and f"explained class {top1[-2]} " in out


def test_explain_and_classify_take_a_folder(tmp_path, capsys):
    """A folder is its tree's image files, in order (hidden ones and other files left out); a
    folder without images is a failure that says so."""
    photos = tmp_path / "photos"
    (photos / "b").mkdir(parents=True)
    (photos / ".hidden").mkdir()
    for path in (photos / "z.png", photos / "b" / "z.jpg", photos / ".hidden" / "h.png"):
        Image.new("RGB", (40, 30), (200, 40, 40)).save(path)
    (photos / "notes.txt").write_text("not an image")
    (photos / "loop").symlink_to(photos)  # walked once, not forever
    out = tmp_path / "out"
    argv = ["explain", str(photos), *R18, "--method", "gradient", "--out", str(out), "--json"]
    code, stdout, err = run(capsys, argv)
    assert code == 0, err
    sources = [image["source"] for image in json.loads(stdout)["images"]]
    assert sources == [str(photos / "b" / "z.jpg"), str(photos / "z.png")]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["z", "z-2"]
    empty = tmp_path / "empty"
    empty.mkdir()
    code, stdout, err = run(capsys, ["classify", str(empty), *R18])
    assert code == 3 and f"the folder {empty} holds no image files" in err


def test_unit_target_before_the_cam_layer(tmp_path, capsys):
    """`--target layer2:3` lies before ResNet's default layer4: the default moves to layer2
    (said on stderr) and the map is not blank; `--layer layer4` is refused, naming layers that
    work."""
    out = tmp_path / "out"
    argv = ["explain", *R18, "--method", "grad-cam", "--target", "layer2:3", "--out", str(out)]
    code, stdout, err = run(capsys, argv)
    assert code == 0, err
    assert "runs before the default layer layer4" in err and "using layer2" in err
    assert "explained unit layer2:3" in stdout
    manifest = json.loads((out / "cat" / "manifest.json").read_text())
    assert [m["layer"] for m in manifest["methods"]] == ["layer2"]
    code, _, err = run(capsys, [*argv, "--layer", "layer4", "--force"])
    assert code == 5 and "choose a layer at or before layer2: layer2" in err


def test_sweep_pattern_is_capped_and_its_time_is_wall_clock(tmp_path, capsys):
    """'layer*' on ResNet-18: the 4 stages of the matching layers (outermost first, the rest
    named in a warning with the flag that shows them); the printed time is the whole run's."""
    argv = ["sweep", *R18, "--method", "grad-cam", "--layers", "layer*", "--max-layers", "4"]
    start = time.perf_counter()
    code, out, err = run(capsys, [*argv, "--out", str(tmp_path)])
    elapsed = time.perf_counter() - start
    assert code == 0, err
    assert "grad-cam over 4 layers" in out
    assert re.search(r"'layer\*' gives \d+ layers; the sweep shows 4 of them", err)
    assert "--max-layers" in err
    with np.load(tmp_path / "cat" / "sweep-grad-cam.npz") as maps:
        assert maps.files == ["layer1", "layer2", "layer3", "layer4"]
    found = re.search(
        r"in ([\d.]+) s \(model ([\d.]+) s, maps ([\d.]+) s, drawing ([\d.]+) s\)", out
    )
    assert found, out
    total, *parts = (float(v) for v in found.groups())
    assert sum(parts) - 0.02 <= total <= elapsed + 0.01  # printed to 2 decimals
