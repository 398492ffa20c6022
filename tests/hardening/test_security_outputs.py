"""Outputs change nothing the user did not ask for: a foreign --out is refused unless --force,
batch deletes only its own marked scratch folder, file names from layer names stay inside
--out, and CSV cells that a spreadsheet would run as formulas are escaped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import cnnvis
from cnnvis.cli import main
from cnnvis.evaluate.tables import spreadsheet_safe

FAST = ["--model", "torchvision:resnet18", "--weights", "none", "--quiet"]


class SlashNet(nn.Module):
    """A small CNN whose blocks are ModuleDict entries named with '/' (like 'a/b')."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict(
            {"a/b": nn.Conv2d(3, 4, 3, padding=1), "/up/": nn.Conv2d(4, 4, 3, padding=1)}
        )
        self.add_module("/abs", nn.Conv2d(4, 4, 1))  # a layer named like an absolute path
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks.values():
            x = torch.relu(block(x))
        x = getattr(self, "/abs")(x)
        return self.head(x.mean(dim=(2, 3)))


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "images" / "photo.png"
    path.parent.mkdir()
    Image.fromarray((rng.random((48, 48, 3)) * 255).astype(np.uint8)).save(path)
    return path


def _listing(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


# ----------------------------------------------------------------------------- --out guard


@pytest.mark.parametrize("command", ["explain", "batch"])
def test_foreign_out_is_refused_and_left_alone(command, photo, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.html").write_text("my own report")
    (out / "run.json").write_text("{}")
    before = _listing(out)
    code = main(
        [
            command,
            str(photo),
            "--out",
            str(out),
            "--method" if command == "explain" else "--methods",
            "gradient",
            *FAST,
        ]
    )
    err = capsys.readouterr().err
    assert code == 8  # OutputError
    assert "not a cnnvis output folder" in err and "--force" in err
    assert _listing(out) == before and sorted(p.name for p in out.iterdir()) == [
        "report.html",
        "run.json",
    ]


def test_force_writes_into_a_foreign_out(photo, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code = main(
        ["explain", str(photo), "--out", str(out), "--method", "gradient", "--force", *FAST]
    )
    assert code == 0, capsys.readouterr().err
    assert (out / "report.html").is_file() and (out / "notes.txt").read_text() == "keep me"


def test_rerun_into_its_own_output_works(photo, tmp_path, capsys):
    out = tmp_path / "out"
    for _ in range(2):
        assert main(["explain", str(photo), "--out", str(out), "--method", "gradient", *FAST]) == 0
    for _ in range(2):
        argv = ["batch", str(photo.parent), "--out", str(tmp_path / "b"), "--methods", "gradient"]
        assert main([*argv, *FAST]) == 0, capsys.readouterr().err


def test_out_that_is_a_file_is_refused(photo, tmp_path, capsys):
    out = tmp_path / "file.txt"
    out.write_text("x")
    assert main(["explain", str(photo), "--out", str(out), "--method", "gradient", *FAST]) == 8
    assert out.read_text() == "x"


# ----------------------------------------------------------------------------- batch scratch


def test_batch_keeps_a_users_tmp_folder(photo, tmp_path, capsys):
    out = tmp_path / "home"
    (out / ".tmp").mkdir(parents=True)
    (out / ".tmp" / "important.txt").write_text("do not delete")
    argv = ["batch", str(photo.parent), "--out", str(out), "--methods", "gradient", "--force"]
    assert main([*argv, *FAST]) == 0, capsys.readouterr().err
    assert (out / ".tmp" / "important.txt").read_text() == "do not delete"
    # the library run, which has no --out guard, keeps it too
    cnnvis.batch.run(
        photo.parent, out, "torchvision:resnet18", "gradient", weights=None, progress=False
    )
    assert (out / ".tmp" / "important.txt").read_text() == "do not delete"


def test_batch_clears_only_a_marked_scratch_folder(photo, tmp_path):
    out = tmp_path / "out"
    scratch = out / ".cnnvis-tmp"
    scratch.mkdir(parents=True)
    (scratch / "unmarked.txt").write_text("not ours")
    cnnvis.batch.run(
        photo.parent, out, "torchvision:resnet18", "gradient", weights=None, progress=False
    )
    assert (scratch / "unmarked.txt").is_file()  # no marker: never deleted
    (out / ".cnnvis-tmp" / "leftover-of-a-killed-run.npz").write_text("x")
    cnnvis.batch.run(
        photo.parent, out, "torchvision:resnet18", "gradient", weights=None, progress=False
    )
    assert not (scratch / "leftover-of-a-killed-run.npz").exists()


# ----------------------------------------------------------------------------- file names


def test_sweep_layer_names_with_slashes_stay_inside_out(photo, tmp_path, capsys):
    model = tmp_path / "slash.pt"
    torch.save(SlashNet().eval(), model)
    out = tmp_path / "deep" / "out"
    argv = [
        "sweep",
        str(photo),
        "--model",
        str(model),
        "--trust-model-file",
        "--method",
        "grad-cam",
        "--layers",
        "*[bs]*",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    inside = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    assert "photo/sweep-grad-cam/blocks.a_b.png" in inside
    assert "photo/sweep-grad-cam/blocks._up_.png" in inside
    assert "photo/sweep-grad-cam/_abs.png" in inside
    outside = [p for p in tmp_path.rglob("*.png") if out not in p.parents and p != photo]
    assert outside == []


class ClashNet(nn.Module):
    """Layers whose names clean to one file name (`a/b`, `a_b`), and one named `file` (a
    keyword of `np.savez_compressed`)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict(
            {"a/b": nn.Conv2d(3, 4, 3, padding=1), "a_b": nn.Conv2d(4, 4, 3, padding=1)}
        )
        self.file = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks.values():
            x = torch.relu(block(x))
        return self.head(self.file(x).mean(dim=(2, 3)))


def test_layers_whose_names_clean_alike_get_their_own_files(photo, tmp_path, capsys):
    model = tmp_path / "clash.pt"
    torch.save(ClashNet().eval(), model)
    out = tmp_path / "out"
    argv = ["sweep", str(photo), "--model", str(model), "--trust-model-file"]
    argv += ["--method", "grad-cam", "--layers", "*", "--out", str(out), "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    pngs = sorted(p.name for p in (out / "photo" / "sweep-grad-cam").glob("*.png"))
    assert {"blocks.a_b.png", "blocks.a_b-2.png", "file.png"} <= set(pngs), pngs
    arrays = np.load(out / "photo" / "sweep-grad-cam.npz")
    assert {"blocks.a/b", "blocks.a_b", "file"} <= set(arrays.files)
    assert not np.array_equal(arrays["blocks.a/b"], arrays["blocks.a_b"])


def test_unique_stems():
    from cnnvis.file_names import unique_stems

    assert unique_stems(["a/b", "a_b", "A_B", "c"]) == {
        "a/b": "a_b",
        "a_b": "a_b-2",
        "A_B": "A_B-3",
        "c": "c",
    }


def test_batch_map_names_are_cleaned():
    from cnnvis.batch.job import MapKey
    from cnnvis.batch.writer import map_path

    assert (
        map_path("x/a.png", MapKey("grad-cam", "a/../../b"))
        == "maps/x/a.png/grad-cam@a_.._.._b.npz"
    )
    assert (
        map_path("x/a.png", MapKey("grad-cam", "layer4.1")) == "maps/x/a.png/grad-cam@layer4.1.npz"
    )


# ----------------------------------------------------------------------------- CSV


def test_formula_cells_are_escaped_in_evaluate_csv(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image = Path("=cmd.png")
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(image)
    out = tmp_path / "eval"
    argv = [
        "evaluate",
        str(image),
        "--methods",
        "gradient",
        "--metrics",
        "deletion",
        "--steps",
        "4",
        "--baselines",
        "",
        "--out",
        str(out),
        *FAST,
    ]
    assert main(argv) == 0, capsys.readouterr().err
    text = (out / "scores.csv").read_text()
    assert "'=cmd.png" in text
    assert not any(line.startswith("=") or ",=" in line for line in text.splitlines())


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("=cmd.png", "'=cmd.png"),
        ("+1", "+1"),
        ("+x", "'+x"),
        ("-0.25", "-0.25"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("-cmd", "'-cmd"),
        ("plain", "plain"),
        (3, 3),
    ],
)
def test_spreadsheet_safe(cell, written):
    assert spreadsheet_safe(cell) == written
