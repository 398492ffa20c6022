"""The command registry: every command module reached from the parser, its help, and every
command's errors through the one handler in `cnnvis.cli.main`."""

from __future__ import annotations

import pkgutil

import pytest

import cnnvis.cli
from cnnvis.cli import main
from cnnvis.cli.main import COMMANDS, build_parser
from cnnvis.errors import CnnvisError, Hint, ModelError

NAMES = [
    "explain",
    "sweep",
    "features",
    "concepts",
    "serve",
    "evaluate",
    "batch",
    "classify",
    "layers",
    "methods",
    "models",
]
HELPERS = {
    "main",
    "common",
    "output",
    "out_folder",
    "detections",
}  # the modules of cnnvis/cli/ that are not commands
# positional arguments a command cannot parse without
NEEDED = {"batch": ["INPUT"], "concepts": ["dff"]}


def _subparsers() -> dict:
    (action,) = build_parser()._subparsers._group_actions
    return action.choices


def _argv(name: str) -> list[str]:
    return [name, *NEEDED.get(name, [])]


def test_every_command_module_is_reached_from_the_parser():
    modules = {m.name for m in pkgutil.iter_modules(cnnvis.cli.__path__)} - HELPERS
    assert {c.__name__.rsplit(".", 1)[1] for c in COMMANDS} == modules
    subparsers = _subparsers()
    assert list(subparsers) == NAMES
    for command in COMMANDS:
        name = command.__name__.rsplit(".", 1)[1]
        assert subparsers[name].get_default("run") is command.run
        assert build_parser().parse_args(_argv(name)).run is command.run


def test_help_lists_all_ten_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    listed = [
        line.split()[0] for line in out.splitlines() if line.startswith("    ") and line.split()
    ]
    for name in NAMES:
        assert name in listed, out


@pytest.mark.parametrize("name", NAMES)
def test_every_command_help_exits_0(capsys, name):
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: cnnvis {name}") and "examples:" in out


class _Odd(CnnvisError):
    exit_code = 42


@pytest.mark.parametrize("name", NAMES)
def test_every_command_errors_through_the_one_handler(capsys, monkeypatch, name):
    """A typed error, an interrupt and an unexpected error of any command: one line, its code."""
    (command,) = [c for c in COMMANDS if c.__name__.endswith(f".{name}")]
    for raised, code, line in (
        (_Odd("odd", hint=Hint("methods")), 42, "cnnvis: error: odd; see `cnnvis methods`"),
        (KeyboardInterrupt(), 130, "cnnvis: interrupted"),
        (RuntimeError("boom"), 1, "cnnvis: unexpected error: RuntimeError: boom"),
    ):

        def fail(args, raised=raised):
            raise raised

        monkeypatch.setattr(command, "run", fail)
        assert main(_argv(name)) == code
        err = capsys.readouterr().err
        assert err.strip() == line + (" (run with --debug for the traceback)" if code == 1 else "")


def test_serve_errors_go_through_the_one_handler(capsys):
    assert main(["serve", "--port", "-5"]) == 2
    assert capsys.readouterr().err == "cnnvis: error: --port must be 0-65535, got -5\n"
    assert main(["serve", "--max-upload-mb", "0"]) == 2
    assert "cnnvis: error: --max-upload-mb must be more than 0" in capsys.readouterr().err
    assert main(["serve", "--model", "resnet18"]) == ModelError.exit_code
    err = capsys.readouterr().err
    assert err.startswith("cnnvis: error: unknown model 'resnet18'") and err.count("\n") == 1
    assert "Traceback" not in err
    assert main(["serve", "--model", "resnet18", "--debug"]) == ModelError.exit_code
    assert "Traceback" in capsys.readouterr().err
