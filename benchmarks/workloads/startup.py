"""CLI startup: wall seconds of `cnnvis --help` and `cnnvis methods`, each a fresh process.

Both must answer in under 0.5 s (issue #17): they import no torch (the command modules and the
public names load on first use, `cnnvis methods` reads the registry's rows from
`cnnvis/data/methods.json`). Each sample is one `python -m cnnvis ...` subprocess run to its
end, timed from outside (interpreter start included); the bare interpreter (`python -c pass`)
is shown beside them as the floor no command can go under. The child runs the cnnvis this
process imported (its folder on PYTHONPATH), with one thread.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cnnvis

from ..common import Context, Row, Target
from . import register

LIMIT = 0.5  # seconds
COMMANDS = {
    "cnnvis --help": ["-m", "cnnvis", "--help"],
    "cnnvis methods": ["-m", "cnnvis", "methods"],
    "python -c pass": ["-c", "pass"],
}


def _env() -> dict[str, str]:
    src = str(Path(cnnvis.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def _runner(args: list[str]):
    env = _env()

    def run() -> None:
        subprocess.run(
            [sys.executable, *args], env=env, check=True, capture_output=True, timeout=120
        )

    return run


@register("cli-startup", "wall time of `cnnvis --help` and `cnnvis methods` (fresh processes)")
def cli_startup(ctx: Context) -> list[Row]:
    workload = "cli-startup"
    repeats = max(ctx.repeats, 5)  # short samples: a few more of them
    timings = ctx.measure(workload, {n: _runner(a) for n, a in COMMANDS.items()}, repeats)
    floor = timings["python -c pass"].median
    rows = []
    for name in ("cnnvis --help", "cnnvis methods"):
        seconds = timings[name].median
        note = f"fresh process, median of {repeats}; the bare interpreter takes {floor:.3f} s"
        rows.append(Row(workload, name, seconds, seconds, Target("wall s", "<=", LIMIT), note=note))
    rows.append(Row(workload, "python -c pass", floor, note="info: the interpreter's own start"))
    return rows
