"""The command line says what it did: no silently skipped method, no unnamed failed file, the
explained class on stdout, folders taken as image lists."""

from __future__ import annotations

import pytest

from cnnvis.cli import main

R18 = ["--model", "torchvision:resnet18", "--weights", "none"]


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_unknown_method_parameter_stops_the_run(tmp_path, capsys):
    """Not a warning, a skipped method and exit 0: exit 6 before anything is loaded, naming
    the parameters the method has."""
    out = tmp_path / "out"
    argv = ["explain", *R18, "--param", "grad-cam.foo=3", "--out", str(out)]
    code, _, err = run(capsys, argv)
    assert code == 6, err
    assert "grad-cam has no parameter 'foo'; it takes no parameters" in err
    assert not out.exists()
    argv = ["explain", *R18, "--method", "rise", "--param", "rise.mask=10", "--out", str(out)]
    code, _, err = run(capsys, argv)
    assert code == 6 and "did you mean masks?" in err and "cells, p, fill" in err


def test_bad_param_spelling_is_a_param_error(capsys):
    from cnnvis.cli.common import parse_params
    from cnnvis.errors import ParamError

    code, _, err = run(capsys, ["explain", "--method", "grad-cam", "--param", "steps=3"])
    assert code == 6 and "METHOD.NAME=VALUE" in err
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
