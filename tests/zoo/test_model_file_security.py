"""Model files run no code unless asked: a pickle that is not weights-only is refused by the
library and the CLI without `trust_pickle=True` / `--trust-model-file`; state dicts and
TorchScript load as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import cnnvis
from cnnvis.cli import main


class _Payload:
    """Unpickling this writes a marker file: what a hostile model file could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def _small_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    )


@pytest.fixture
def evil(tmp_path: Path) -> tuple[Path, Path]:
    """(a model file whose unpickling writes a marker, the marker's path)."""
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pt"
    torch.save({"model": _small_model(), "payload": _Payload(marker)}, path)
    return path, marker


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.full((40, 40, 3), 120, np.uint8)).save(path)
    return path


def test_library_refuses_a_code_running_pickle(evil):
    path, marker = evil
    with pytest.raises(cnnvis.ModelError) as caught:
        cnnvis.load_model(path)
    message = str(caught.value)
    for words in (
        "any code",
        "--trust-model-file",
        "trust_pickle=True",
        "add_safe_globals",
        "--weights",
        "TorchScript",
    ):
        assert words in message
    assert not marker.exists()


def test_library_opt_in_unpickles(evil):
    path, marker = evil
    loaded = cnnvis.load_model(path, trust_pickle=True)
    assert isinstance(loaded.module, nn.Module)
    assert marker.read_text() == "ran"  # the opt-in is what runs the file's code


def test_cli_refuses_without_the_flag(evil, photo, tmp_path, capsys):
    path, marker = evil
    out = tmp_path / "out"
    code = main(
        [
            "explain",
            str(photo),
            "--model",
            str(path),
            "--method",
            "gradient",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == cnnvis.ModelError.exit_code
    assert "--trust-model-file" in err and "Traceback" not in err
    assert not marker.exists()


def test_cli_batch_refuses_without_the_flag(evil, photo, tmp_path, capsys):
    path, marker = evil
    code = main(
        ["batch", str(photo), "--out", str(tmp_path / "out"), "--model", str(path), "--quiet"]
    )
    assert code == cnnvis.ModelError.exit_code
    assert not marker.exists()


def test_cli_flag_unpickles(evil, photo, tmp_path, capsys):
    path, marker = evil
    out = tmp_path / "out"
    code = main(
        [
            "explain",
            str(photo),
            "--model",
            str(path),
            "--trust-model-file",
            "--method",
            "gradient",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert marker.exists()


def test_state_dict_and_torchscript_need_no_opt_in(tmp_path):
    weights = tmp_path / "r18.pt"
    torch.save(_resnet18().state_dict(), weights)
    loaded = cnnvis.load_model("torchvision:resnet18", weights=weights)
    assert isinstance(loaded.module, nn.Module)
    scripted = tmp_path / "small.ts"
    torch.jit.save(torch.jit.script(_small_model()), scripted)
    assert isinstance(cnnvis.load_model(scripted).module, nn.Module)


def test_weights_only_module_file_needs_no_opt_in(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"conv.weight": torch.zeros(2, 3, 1, 1)}, path)
    with pytest.raises(cnnvis.ModelError, match="state dict"):
        cnnvis.load_model(path)  # weights-only readable: the state-dict advice, not the refusal


def _resnet18() -> nn.Module:
    from torchvision.models import resnet18

    return resnet18(weights=None)


def test_served_file_is_weights_only_without_the_flag(evil):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from cnnvis.web.app import create_app

    path, marker = evil
    with TestClient(create_app(str(path))) as client:
        response = client.get("/api/layers")
    assert response.status_code >= 400 and "--trust-model-file" in response.text
    assert not marker.exists()


def test_serve_flag_loads_the_file_up_front(evil):
    from cnnvis.cli.main import build_parser
    from cnnvis.cli.serve import served_model

    path, marker = evil
    plain = build_parser().parse_args(["serve", "--model", str(path)])
    assert served_model(plain) == str(path) and not marker.exists()
    trusted = build_parser().parse_args(["serve", "--model", str(path), "--trust-model-file"])
    assert isinstance(served_model(trusted), cnnvis.LoadedModel) and marker.exists()
