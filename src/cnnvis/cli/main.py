"""The `cnnvis` command: the parser built from one module per command, and the one place that
turns every command's errors into a message and an exit code.

Each module in `COMMANDS` declares its sub-parser (`add_parser(subparsers)`) and does its work
(`run(args) -> int`); a new command is a new module, with its name and one-line help in
`COMMAND_HELP`. `main` imports only the module of the command it runs, so `cnnvis --help` and
`cnnvis methods` start without loading torch (`COMMANDS` imports them all, on first use).
"""

from __future__ import annotations

import argparse
import importlib
import io
import logging
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from .. import __version__
from ..errors import CnnvisError
from .common import examples, say

log = logging.getLogger("cnnvis")

# Each command's one-line help (its module's ABOUT; a test keeps them equal), in the order
# `cnnvis --help` lists them.
COMMAND_HELP = {
    "explain": "Explain images with one or several methods; write figures and maps.",
    "sweep": "The tutorial's per-layer loop in one pass: a method at every layer.",
    "features": "Feature visualization: the input a class, channel or neuron responds to most.",
    "concepts": "Concepts the network has learned: deep feature factorization (dff) of a layer.",
    "serve": "Serve the web page and its JSON API (FastAPI under uvicorn).",
    "evaluate": "Can the maps be trusted? Faithfulness, localisation and sanity checks vs "
    "baselines.",
    "batch": "Explain a whole dataset into maps and a Parquet index; resumable; local or on Ray.",
    "classify": "Top-k predictions with class names and probabilities.",
    "layers": "The model's layers with output shapes; the default layer marked.",
    "methods": "Every registered method: what it is, its paper, needs and cost.",
    "models": "Model sources and names, and which have weights here.",
}
EXAMPLES = """
    cnnvis explain                  # the bundled cat: figures, maps, report.html in ./cnnvis-out
    cnnvis explain photo.jpg --method all
    cnnvis sweep photo.jpg          # guided Grad-CAM at every layer, as one grid
    cnnvis classify photo.jpg
    cnnvis COMMAND --help           # each command's options and examples
"""


def command_module(name: str) -> ModuleType:
    """The module of command `name` (`cnnvis.cli.<name>`), imported now."""
    return importlib.import_module(f".{name}", __package__)


def __getattr__(name: str) -> Any:
    """`COMMANDS`: every command module, in `COMMAND_HELP`'s order (imports them all)."""
    if name == "COMMANDS":
        return tuple(command_module(command) for command in COMMAND_HELP)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The `cnnvis` parser: each command's sub-parser, with its `run` as the `run` default.

    `only`: build that command's sub-parser alone (its module is the only one imported); the
    others are listed by name and help. `only=""` imports no command module (`cnnvis --help`).
    """
    parser = argparse.ArgumentParser(
        prog="cnnvis",
        description="See what an image classifier looks at.",
        epilog=examples(EXAMPLES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cnnvis {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, about in COMMAND_HELP.items():
        if only is None or name == only:
            command = command_module(name)
            command.add_parser(subparsers).set_defaults(run=command.run)
        else:
            subparsers.add_parser(name, help=about, add_help=False)
    return parser


def _command_in(argv: Sequence[str]) -> str:
    """The command `argv` runs ("" for none: `--help`, `--version`, or a name that is not one)."""
    first = next((a for a in argv if not a.startswith("-")), "")
    return first if first in COMMAND_HELP else ""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    0 ok; 1 some images failed (the others were written) or an unexpected error; 2 bad
    arguments; 3 no image could be read; 4 model, 5 layer, 6 method, 7 target, 8 parameter
    errors.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=_command_in(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # --help, --version, or a usage error (already printed)
        return exit.code if isinstance(exit.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 2
    args.argv = argv
    debug = getattr(args, "debug", False)
    quiet = getattr(args, "quiet", False) or getattr(args, "json", False)
    with _logging(logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)):
        try:
            return args.run(args)
        except CnnvisError as error:
            if debug:
                traceback.print_exc()
            print(f"cnnvis: error: {say(error, args)}", file=sys.stderr)
            return error.exit_code
        except KeyboardInterrupt:
            print("cnnvis: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `cnnvis layers | head`: the reader left, stop quietly
            _silence_stdout()
            return 141
        except Exception as error:  # the last line of defence: one line, no traceback by default
            if debug:
                traceback.print_exc()
            print(
                f"cnnvis: unexpected error: {type(error).__name__}: {error} (run with --debug "
                "for the traceback)",
                file=sys.stderr,
            )
            return 1


def entry_point() -> None:
    sys.exit(main())


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


class _Handler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record is emitted (tests swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


@contextmanager
def _logging(level: int) -> Iterator[None]:
    """Library log records at `level` and above as 'cnnvis: message' lines on stderr."""
    handler = _Handler()
    handler.setFormatter(logging.Formatter("cnnvis: %(message)s"))
    previous = log.level
    log.setLevel(level)
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(previous)
