"""One documented error hierarchy: the table in `cnnvis.errors` matches the classes, every
message says what was wrong and what to do, and the command line maps each error to its exit
code with a one-line message and no traceback."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import cnnvis
from cnnvis import errors
from cnnvis.cli import main
from cnnvis.errors import (
    CnnvisError,
    ImageError,
    LayerError,
    MethodError,
    ModelError,
    OutputError,
    ParamError,
    TargetError,
)

from conftest import TinyCNN

CLASSES = [
    CnnvisError,
    ImageError,
    ModelError,
    LayerError,
    MethodError,
    TargetError,
    OutputError,
    ParamError,
]


def test_the_docstring_table_matches_the_classes():
    rows = dict(re.findall(r"^(\w+Error)\s+(\d+)\s", errors.__doc__ or "", re.MULTILINE))
    assert rows == {cls.__name__: str(cls.exit_code) for cls in CLASSES}
    documented = {
        c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, CnnvisError)
    }
    assert documented == set(CLASSES)
    assert len({cls.exit_code for cls in CLASSES}) == len(CLASSES)  # one code per kind


def test_each_error_is_also_the_builtin_it_refines():
    for cls in (ImageError, ModelError, MethodError, TargetError):
        assert issubclass(cls, ValueError) and issubclass(cls, CnnvisError)
    assert issubclass(LayerError, KeyError)
    assert issubclass(OutputError, FileExistsError) and issubclass(OutputError, CnnvisError)
    assert str(LayerError("plain words")) == "plain words"  # not KeyError's quoted repr


X = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))

# (call, error, words saying what was wrong, words saying what to do)
CASES: list[tuple[Callable[[], object], type[CnnvisError], str, str]] = [
    (lambda: cnnvis.load_image("/no/such/cat.png"), ImageError, "not found", "check the path"),
    (lambda: cnnvis.load_image(b""), ImageError, "bytes are empty", "pass the contents"),
    (
        lambda: cnnvis.load_image(np.zeros((3, 8, 8), np.uint8)),
        ImageError,
        "got shape (3, 8, 8)",
        "array.transpose(1, 2, 0)",
    ),
    (lambda: cnnvis.explain(TinyCNN(), X[:0]), ImageError, "is empty", "at least one image"),
    (
        lambda: cnnvis.explain(TinyCNN(), X.to(torch.uint8)),
        ImageError,
        "got torch.uint8",
        "pass the image itself",
    ),
    (lambda: cnnvis.explain(TinyCNN(), X * torch.nan), ImageError, "NaN", "clean it first"),
    (lambda: cnnvis.explain("model", X), ModelError, "got str", "cnnvis.load_model"),
    (lambda: cnnvis.load_model("resnet18"), ModelError, "unknown model", "torchvision:resnet18"),
    (lambda: cnnvis.explain(TinyCNN(), X, "grad-cam", "conv3"), LayerError, "'conv3'", "conv2"),
    (lambda: cnnvis.explain(TinyCNN(), X, "gradcam"), MethodError, "'gradcam'", "grad-cam"),
    (
        lambda: cnnvis.explain(TinyCNN(), X, "smoothgrad", samples=0),
        MethodError,
        "samples must be a positive integer",
        "got 0",
    ),
    (
        lambda: cnnvis.explain(TinyCNN(), X, "smoothgrad", noise_level="high"),
        MethodError,
        "noise_level",
        "check their names and types",
    ),
    (lambda: cnnvis.explain(TinyCNN(), X, target=9), TargetError, "out of range", "0 to 4"),
    (
        lambda: cnnvis.explain(TinyCNN(), X, target=[1, 2]),
        TargetError,
        "2 targets given for a batch of 1",
        "one target per image",
    ),
    (lambda: cnnvis.explain(TinyCNN(), X, target=1.5), TargetError, "got float 1.5", "class index"),
]


@pytest.mark.parametrize(("call", "error", "what", "todo"), CASES)
def test_messages_say_what_was_wrong_and_what_to_do(call, error, what, todo):
    with pytest.raises(error) as caught:
        call()
    assert type(caught.value) is error
    message = str(caught.value)
    assert what in message and todo in message, message


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 8, 8), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    model.extend([nn.Flatten(), nn.Linear(4, 3)])
    path = tmp_path_factory.mktemp("model") / "m.pt"
    torch.save(model, path)
    return path


def argv_for(cls: type[CnnvisError], model: str, tmp: Path) -> list[str]:
    base = ["sample:cat", "--model", model, "--trust-model-file", "--out", str(tmp)]
    return {
        ImageError: ["classify", str(tmp / "missing.png"), "--model", model, "--trust-model-file"],
        ModelError: ["classify", "sample:cat", "--model", "nowhere:thing"],
        LayerError: ["explain", *base, "--method", "grad-cam", "--layer", "9"],
        MethodError: ["explain", *base, "--method", "nope"],
        TargetError: ["explain", *base, "--method", "gradient", "--target", "3"],
        OutputError: ["explain", *base, "--method", "gradient"],
        ParamError: ["explain", *base, "--method", "rise", "--param", "rise.mask=5"],
    }[cls]


@pytest.mark.parametrize("cls", CLASSES[1:], ids=lambda c: c.__name__)
def test_cli_maps_each_error_to_its_exit_code(cls, model_file, tmp_path, capsys):
    if cls is OutputError:
        (tmp_path / "notes.txt").write_text("someone else's file")
    code = main(argv_for(cls, str(model_file), tmp_path))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("cnnvis: error: ")]
    assert code == cls.exit_code, err
    assert len(lines) == 1 and "Traceback" not in err, err
