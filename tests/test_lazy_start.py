"""`cnnvis --help` and `cnnvis methods` start without importing torch (their speed is measured in
benchmarks/, case `cli-startup`); the data they read instead stays equal to the registry's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnvis import method_rows
from cnnvis.cli.main import COMMAND_HELP, COMMANDS

SRC = str(Path(__file__).resolve().parents[1] / "src")
PROBE = """
import sys
from cnnvis.cli import main
code = main({argv!r})
heavy = sorted(m for m in ("torch", "numpy", "PIL", "matplotlib") if m in sys.modules)
print("IMPORTED:" + ",".join(heavy), file=sys.stderr)
"""


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    code = PROBE.format(argv=argv)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.parametrize("argv", [["--help"], ["methods"], ["methods", "--json"], ["--version"]])
def test_help_and_methods_import_no_torch(argv):
    done = _run(argv)
    assert "IMPORTED:\n" in done.stderr, done.stderr
    assert done.stdout.strip()


def test_methods_listing_is_the_registrys():
    """data/methods.json is what the registry lists now (`python -m cnnvis.method_rows`)."""
    text = method_rows.PATH.read_text(encoding="utf-8")
    assert text == method_rows.registry_text(), "run `python -m cnnvis.method_rows`"
    done = _run(["methods", "--json"])
    listed = json.loads(done.stdout)
    assert [row["name"] for row in listed] == method_rows.names()


def test_each_commands_help_line_is_its_modules():
    assert {c.__name__.rsplit(".", 1)[1]: c.ABOUT for c in COMMANDS} == COMMAND_HELP


def test_import_cnnvis_is_light_until_a_name_is_used():
    code = (
        "import sys, cnnvis; before = 'torch' in sys.modules; cnnvis.Explanation;"
        "print(before, 'torch' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        timeout=120,
    )
    assert done.stdout.split() == ["False", "True"], done.stderr
