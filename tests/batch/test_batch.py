"""`cnnvis batch` and `cnnvis.batch.run`: inputs, maps and index, bad files, labels, resume,
and a SIGKILLed run resumed to a complete, consistent index."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("pyarrow")

import cnnvis
from cnnvis import batch
from cnnvis.batch.index import Index, atomic_write, latest, schema
from cnnvis.batch.inputs import discover
from cnnvis.cli import main
from cnnvis.errors import CnnvisError, ImageError, TargetError
from cnnvis.model import LoadedModel, Preprocess

from conftest import TinyCNN

CLASSES = ["cat", "dog", "golden retriever", "fish", "frog"]
SIZE = 32


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return LoadedModel(
        TinyCNN(classes=5).eval(),
        name="tiny",
        preprocess=Preprocess(resize_size=SIZE, crop_size=SIZE),
        categories=list(CLASSES),
    )


def picture(path: Path, seed: int, size: tuple[int, int] = (40, 36)) -> Path:
    """A seeded random RGB image file (format from the suffix)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(path)
    return path


def table(out: Path) -> list[dict]:
    return sorted(
        batch.read_index(out).to_pylist(), key=lambda r: (r["relpath"], r["method"] or "")
    )


def run(model, inputs, out, **kwargs):
    kwargs.setdefault("workers", 0)
    kwargs.setdefault("progress", False)
    return batch.run(inputs, out, model, **kwargs)


# ----------------------------------------------------------------------------- inputs


def test_folder_glob_and_lists_name_the_same_images(tmp_path):
    root = tmp_path / "photos"
    for i, rel in enumerate(["a/one.png", "a/two.jpg", "b/deep/three.png", "top.png"]):
        picture(root / rel, i)
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(b"")
    folder = discover(root)
    rels = ["a/one.png", "a/two.jpg", "b/deep/three.png", "top.png"]
    assert [i.relpath for i in folder.items] == rels
    assert folder.kind == "folder" and folder.ignored == 1 and not folder.labelled
    glob = discover(str(root / "**" / "*.png"))
    assert [i.relpath for i in glob.items] == ["a/one.png", "b/deep/three.png", "top.png"]
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "list.txt").write_text("# images\n../photos/a/one.png\n\n" + f"{root / 'top.png'}\n")
    text = discover(lists / "list.txt")
    assert [i.path for i in text.items] == [str(root / "a/one.png"), str(root / "top.png")]
    (lists / "list.csv").write_text("label,path\ncat,../photos/a/one.png\n,../photos/top.png\n")
    csv = discover(lists / "list.csv")
    assert [(i.relpath, i.label) for i in csv.items] == [("a/one.png", "cat"), ("top.png", None)]
    (lists / "bare.csv").write_text(f"{root / 'a/two.jpg'},x\n")
    assert [i.relpath for i in discover(lists / "bare.csv").items] == ["two.jpg"]
    with pytest.raises(ImageError, match="does not exist"):
        discover(tmp_path / "nowhere")
    with pytest.raises(ImageError, match="matches no files"):
        discover(str(tmp_path / "*.gif"))


def test_imagefolder_tree_gives_labels(tmp_path):
    picture(tmp_path / "dog" / "1.png", 1)
    picture(tmp_path / "cat" / "sub" / "2.png", 2)
    found = discover(tmp_path)
    assert found.kind == "imagefolder"
    assert [(i.relpath, i.label) for i in found.items] == [
        ("cat/sub/2.png", "cat"),
        ("dog/1.png", "dog"),
    ]


# ----------------------------------------------------------------------------- a run


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory, model):
    """Four good images in nested folders, two of them named alike, and three bad files."""
    root = tmp_path_factory.mktemp("data") / "photos"
    good = ["x/same.png", "y/same.png", "y/z/other.jpg", "top.png"]
    for i, rel in enumerate(good):
        picture(root / rel, 10 + i)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "empty.png").write_bytes(b"")
    (root / "text.png").write_text("hello, I am text")
    (root / "readme.txt").write_text("ignored: not an image by its suffix")
    out = root.parent / "out"
    summary = run(model, root, out, methods=["grad-cam", "gradient"], batch_size=8, png=True)
    return root, out, good, summary


def test_rows_per_image_and_method_with_errors_for_bad_files(folder_run):
    root, out, good, summary = folder_run
    rows = table(out)
    assert (summary.total, summary.done, summary.failed, summary.skipped) == (7, 4, 3, 0)
    assert summary.rows == len(rows) == 7 * 2
    keys = [(r["relpath"], r["method"]) for r in rows]
    assert len(set(keys)) == len(keys)
    bad = {r["relpath"]: r for r in rows if r["error_type"] is not None}
    assert set(bad) == {"broken.jpg", "empty.png", "text.png"}
    assert all(r["error_type"] == "ImageError" and r["error"] for r in bad.values())
    assert all(r["map_path"] is None for r in bad.values())
    assert bad["empty.png"]["size_bytes"] == 0
    assert "readme.txt" not in {r["relpath"] for r in rows}
    ok = [r for r in rows if r["error_type"] is None]
    assert sorted({r["relpath"] for r in ok}) == sorted(good)
    assert {r["layer"] for r in ok if r["method"] == "grad-cam"} == {"relu2"}
    assert {r["layer"] for r in ok if r["method"] == "gradient"} == {None}
    assert all(r["settings"] and r["model"] == "tiny" and r["seconds"] > 0 for r in ok)
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["summary"]["done"] == 4 and run_json["input"]["ignored_files"] == 1


def test_maps_equal_the_library_and_stats_are_right(folder_run, model):
    root, out, good, _ = folder_run
    rows = [r for r in table(out) if r["error_type"] is None]
    sources = sorted({r["source"] for r in rows})
    reference = cnnvis.explain_many(model, sources, ["grad-cam", "gradient"], ["relu2"])
    for r in rows:
        i = sources.index(r["source"])
        e = reference[(r["method"], r["layer"])]
        with np.load(out / r["map_path"]) as stored:
            m = stored["map"]
            np.testing.assert_allclose(m, e.map[i].numpy(), rtol=1e-5, atol=1e-7)
            if r["method"] == "grad-cam":
                assert stored["layer_map"].shape == tuple(e.layer_map[i].shape)
        assert r["map_min"] == pytest.approx(float(m.min()), rel=1e-6)
        assert r["map_max"] == pytest.approx(float(m.max()), rel=1e-6)
        assert r["map_mean"] == pytest.approx(float(m.astype(np.float64).mean()), rel=1e-5)
        mass = np.maximum(m, 0) if m.ndim == 2 else np.abs(m).sum(axis=0)
        mass = np.sort(mass.astype(np.float64).ravel())
        expected = mass[-math.ceil(0.1 * mass.size) :].sum() / mass.sum()
        assert r["energy_top10"] == pytest.approx(expected, rel=1e-6)
        assert 0.1 - 1e-9 <= r["energy_top10"] <= 1.0
        assert r["pred_index"] == e.predictions[i][0].index
        assert r["target_index"] == r["pred_index"]  # top1
        assert r["pred_name"] == CLASSES[r["pred_index"]]
        assert r["target_prob"] == pytest.approx(e.probabilities[i], rel=1e-6)


def test_same_names_in_different_folders_do_not_collide(folder_run):
    root, out, _, _ = folder_run
    rows = {(r["relpath"], r["method"]): r for r in table(out)}
    a, b = rows[("x/same.png", "grad-cam")], rows[("y/same.png", "grad-cam")]
    assert a["map_path"] == "maps/x/same.png/grad-cam@relu2.npz"
    assert b["map_path"] == "maps/y/same.png/grad-cam@relu2.npz"
    assert a["sha256"] != b["sha256"]
    with np.load(out / a["map_path"]) as ma, np.load(out / b["map_path"]) as mb:
        assert not np.array_equal(ma["map"], mb["map"])
    for r in (a, b):
        with Image.open(out / r["png_path"]) as png:
            assert png.size == (SIZE, SIZE) and png.mode == "RGB"
    assert [p.name for p in (out / ".cnnvis-tmp").iterdir()] == ["CNNVIS-TEMPORARY-FOLDER"]


def test_second_run_skips_everything_done(folder_run, model, tmp_path):
    root, out, _, _ = folder_run
    before = table(out)
    again = run(model, root, out, methods=["grad-cam", "gradient"], batch_size=8, png=True)
    assert (again.done, again.skipped, again.failed) == (0, 4, 3)  # bad files are retried
    after = table(out)
    assert len(after) == len(before)
    strip = ("run", "seconds", "decode_seconds")
    good = [{k: v for k, v in r.items() if k not in strip} for r in before if not r["error"]]
    assert good == [{k: v for k, v in r.items() if k not in strip} for r in after if not r["error"]]


def test_other_settings_are_not_skipped_and_moved_files_are_reused(model, tmp_path):
    root = tmp_path / "in"
    for i in range(3):
        picture(root / f"{i}.png", i)
    out = tmp_path / "out"
    first = run(model, root, out, methods=["grad-cam"])
    assert first.done == 3
    top1 = {r["settings"] for r in table(out)}
    other = run(model, root, out, methods=["grad-cam"], target=1)
    assert (other.done, other.skipped) == (3, 0)
    rows = table(out)
    assert len(rows) == 6 and len({r["settings"] for r in rows}) == 2
    assert {r["target_index"] for r in rows if r["settings"] not in top1} == {1}
    (root / "1.png").rename(root / "moved.png")
    moved = run(model, root, out, methods=["grad-cam"])
    assert (moved.done, moved.skipped) == (0, 3)
    rows = {r["relpath"]: r for r in table(out) if r["settings"] in top1}
    assert rows["moved.png"]["sha256"] == rows["1.png"]["sha256"]
    assert rows["moved.png"]["map_path"] == rows["1.png"]["map_path"]
    assert rows["moved.png"]["seconds"] == 0.0


# ----------------------------------------------------------------------------- targets


def test_target_label_from_class_folders(model, tmp_path):
    root = tmp_path / "tree"
    picture(root / "dog" / "a.png", 1)
    picture(root / "Golden_Retriever" / "b.png", 2)
    picture(root / "4" / "c.png", 3)
    out = tmp_path / "out"
    summary = run(model, root, out, methods=["grad-cam"], target="label")
    assert summary.done == 3
    got = {r["relpath"]: (r["label"], r["label_index"], r["target_index"]) for r in table(out)}
    assert got == {
        "dog/a.png": ("dog", 1, 1),
        "Golden_Retriever/b.png": ("Golden_Retriever", 2, 2),
        "4/c.png": ("4", 4, 4),
    }
    picture(root / "zebra" / "d.png", 4)
    with pytest.raises(TargetError, match="'zebra'"):
        run(model, root, tmp_path / "out2", methods=["grad-cam"], target="label")
    flat = tmp_path / "flat"
    picture(flat / "e.png", 5)
    with pytest.raises(TargetError, match="needs a label for every image"):
        run(model, flat, tmp_path / "out3", methods=["grad-cam"], target="label")


def test_imagenet_wordnet_id_folders_are_classes(tmp_path):
    """ImageNet's own trees name class folders by WordNet ID: n02123045 is class 281 (tabby)."""
    from cnnvis.batch.labels import imagenet_wnids, label_index
    from cnnvis.model import imagenet_categories

    wnids = imagenet_wnids()
    categories = imagenet_categories()
    assert len(wnids) == 1000 and sorted(wnids) == list(wnids)  # class order = sorted IDs
    # timm's synset order and torchvision's class names agree on every class
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    for index, name in enumerate(categories):
        assert name.lower().split()[0] in info.index_to_description(index).lower(), index
    assert label_index("n02123045", categories, 1000) == 281
    assert label_index("n02123045", None, 1000) == 281  # no names needed
    assert label_index("n02123045", CLASSES, 5) is None  # not an ImageNet-1k model
    assert label_index("n99999999", categories, 1000) is None

    tiny = LoadedModel(
        TinyCNN(classes=1000).eval(),
        name="tiny-imagenet",
        preprocess=Preprocess(resize_size=SIZE, crop_size=SIZE),
        categories=categories,
    )
    root = tmp_path / "val"
    picture(root / "n01440764" / "ILSVRC2012_val_00000293.JPEG", 1)
    picture(root / "n02123045" / "ILSVRC2012_val_00000023.JPEG", 2)
    summary = run(tiny, root, tmp_path / "out", methods=["grad-cam"], target="label")
    assert summary.done == 2
    got = {r["label"]: (r["label_index"], r["target_name"]) for r in table(tmp_path / "out")}
    assert got == {"n01440764": (0, "tench"), "n02123045": (281, "tabby")}
    picture(root / "n99999999" / "x.JPEG", 3)
    with pytest.raises(TargetError, match="WordNet ID"):
        run(tiny, root, tmp_path / "out2", methods=["grad-cam"], target="label")


def test_csv_list_with_labels_and_a_glob_run_end_to_end(model, tmp_path):
    picture(tmp_path / "img" / "a.png", 1)
    picture(tmp_path / "img" / "b.jpg", 2)
    (tmp_path / "list.csv").write_text("path,label\nimg/a.png,frog\nimg/b.jpg,0\n")
    summary = run(model, tmp_path / "list.csv", tmp_path / "out", target="label")
    assert summary.done == 2
    got = {r["relpath"]: (r["label"], r["target_index"]) for r in table(tmp_path / "out")}
    assert got == {"a.png": ("frog", 4), "b.jpg": ("0", 0)}
    summary = run(model, str(tmp_path / "img" / "*.jpg"), tmp_path / "out2")
    assert summary.done == 1 and [r["relpath"] for r in table(tmp_path / "out2")] == ["b.jpg"]


def test_progress_bar_shows_rate_and_counts(model, tmp_path, capsys):
    for i in range(3):
        picture(tmp_path / "in" / f"{i}.png", i)
    run(model, tmp_path / "in", tmp_path / "out", progress=True, batch_size=2)
    err = capsys.readouterr().err
    assert "3/3" in err and "img/s" in err and "done=3" in err


def test_a_second_run_into_the_same_folder_is_refused(model, tmp_path):
    import fcntl

    from cnnvis.errors import CnnvisError

    picture(tmp_path / "in" / "a.png", 1)
    (tmp_path / "out").mkdir()
    with open(tmp_path / "out" / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(CnnvisError, match="another cnnvis batch run"):
            run(model, tmp_path / "in", tmp_path / "out")
    assert run(model, tmp_path / "in", tmp_path / "out").done == 1


def test_target_index_and_bad_targets(model, tmp_path):
    picture(tmp_path / "in" / "a.png", 1)
    summary = run(model, tmp_path / "in", tmp_path / "out", methods=["grad-cam"], target="fish")
    assert summary.done == 1 and table(tmp_path / "out")[0]["target_index"] == 3
    with pytest.raises(TargetError, match="out of range"):
        run(model, tmp_path / "in", tmp_path / "o2", methods=["grad-cam"], target=9)
    with pytest.raises(TargetError, match="explain a class"):
        run(model, tmp_path / "in", tmp_path / "o3", methods=["grad-cam"], target="conv2:1")


# ----------------------------------------------------------------------------- index


def test_index_keeps_the_last_row_and_compacts(tmp_path):
    index = Index(tmp_path)
    row = {"source": "/a.png", "method": "m", "layer": None, "settings": "s", "error": "first"}
    index.write_part([row, {**row, "source": "/b.png"}], "1")
    index.write_part([{**row, "error": None, "map_min": 1.0}], "2")
    merged = sorted(index.read().to_pylist(), key=lambda r: r["source"])
    assert [(r["source"], r["error"], r["map_min"]) for r in merged] == [
        ("/a.png", None, 1.0),
        ("/b.png", "first", None),
    ]
    assert index.read().schema == schema()
    index.compact()
    assert len(index.parts()) == 1
    assert sorted(index.read().to_pylist(), key=lambda r: r["source"]) == merged
    assert latest(schema().empty_table()).num_rows == 0


def test_atomic_write_leaves_nothing_when_writing_fails(tmp_path):
    target = tmp_path / "deep" / "map.npz"

    def fail(tmp):
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail, tmp_path)
    assert not target.exists() and list(tmp_path.iterdir()) == []
    atomic_write(target, lambda tmp: tmp.write_bytes(b"whole"), tmp_path)
    assert target.read_bytes() == b"whole"


# ----------------------------------------------------------------------------- the command


R18 = ["--model", "torchvision:resnet18", "--weights", "none", "--seed", "0"]


def test_cli_json_summary_and_exit_codes(tmp_path, capsys):
    root = tmp_path / "in"
    picture(root / "a.png", 1)
    (root / "bad.png").write_bytes(b"nope")
    out = tmp_path / "out"
    argv = ["batch", str(root), "--out", str(out), *R18, "--methods", "grad-cam", "--json"]
    code = main(argv)
    summary = json.loads(capsys.readouterr().out)
    assert code == 1 and summary["done"] == 1 and summary["failed"] == 1
    assert (out / "maps" / "a.png" / "grad-cam@layer4.npz").is_file()
    only_bad = tmp_path / "bad"
    (only_bad).mkdir()
    (only_bad / "x.png").write_bytes(b"nope")
    assert main(["batch", str(only_bad), "--out", str(tmp_path / "o2"), *R18, "-q"]) == 3
    capsys.readouterr()
    code = main(["batch", str(root), "--out", str(tmp_path / "o3"), *R18, "--target", "label"])
    assert code == 7 and "needs a label" in capsys.readouterr().err
    assert main(["batch", "--help"]) == 0
    assert "cnnvis batch" in capsys.readouterr().out


def _parts(out: Path) -> list[Path]:
    return sorted((out / "index").glob("part-*.parquet")) if (out / "index").is_dir() else []


def test_sigkill_mid_run_then_resume_gives_a_complete_index(tmp_path):
    """Kill the command (SIGKILL) once some batches are indexed; the index stays readable, the
    rerun finishes the rest, every image appears once per method, every map loads."""
    root = tmp_path / "in"
    for i in range(40):
        picture(root / f"d{i % 3}" / f"{i:02d}.png", 100 + i, (48, 48))
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "cnnvis", "batch", str(root), "--out", str(out), *R18]
    argv += ["--batch-size", "2", "--workers", "1", "--methods", "grad-cam", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(_parts(out)) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    # the run lock died with the run: its (orphaned) decoding worker does not hold it
    import fcntl

    with open(out / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(lock, fcntl.LOCK_UN)
    killed = batch.read_index(out).to_pylist()  # every part file is whole
    assert 0 < len(killed) < 40
    for r in killed:
        with np.load(out / r["map_path"]) as stored:
            assert stored["map"].shape == (224, 224)

    resumed = subprocess.run([*argv[:-1], "--json"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["skipped"] == len({r["source"] for r in killed})
    assert summary["done"] + summary["skipped"] == 40 and summary["failed"] == 0
    rows = batch.read_index(out).to_pylist()
    assert len(rows) == 40 and len({r["source"] for r in rows}) == 40
    assert all(r["error"] is None for r in rows)
    assert len(_parts(out)) == 1  # compacted
    on_disk = {p.relative_to(out).as_posix() for p in (out / "maps").rglob("*.npz")}
    assert on_disk == {r["map_path"] for r in rows}
    for r in rows:
        with np.load(out / r["map_path"]) as stored:
            assert np.isfinite(stored["map"]).all()
    assert [p.name for p in (out / ".cnnvis-tmp").iterdir()] == ["CNNVIS-TEMPORARY-FOLDER"]
    assert len({r["settings"] for r in rows}) == 1  # the same weights fingerprint in both runs
    torch.manual_seed(0)  # what --seed 0 does before building the random-init model
    model = cnnvis.load_model("torchvision:resnet18", weights=None)
    first, last = rows[0], rows[-1]
    reference = cnnvis.explain(model, [first["source"], last["source"]], "grad-cam", "layer4")
    for i, r in enumerate((first, last)):
        with np.load(out / r["map_path"]) as stored:
            np.testing.assert_allclose(
                stored["map"], reference.map[i].numpy(), rtol=1e-4, atol=1e-6
            )


@pytest.mark.parametrize(("cores", "expected"), [(1, 0), (2, 0), (4, 1), (8, 2), (16, 4), (64, 4)])
def test_default_decoding_workers_leave_small_machines_to_torch(monkeypatch, cores, expected):
    run_module = sys.modules["cnnvis.batch.run"]  # `cnnvis.batch.run` is the function

    monkeypatch.setattr(run_module.os, "sched_getaffinity", lambda _pid: set(range(cores)))
    assert run_module._workers(None) == expected
    assert run_module._workers(3) == 3
    with pytest.raises(CnnvisError, match="0 or more"):
        run_module._workers(-1)
