"""Render a results JSON as the benchmark table of docs/guides/benchmarks.md.

    python -m benchmarks.readme_table RESULTS.json            # print the markdown
    python -m benchmarks.readme_table RESULTS.json --write    # replace it in docs/guides/benchmarks.md

The table has one line per gated target (the ratio measured, the target, pass/fail) and, under
it, the machine the run was on (CPU, cores, torch threads, torch and peer versions, load
average, commit) — the numbers only mean something together with that line. Informational rows
(the other yardstick, cold runs) stay in the JSON and the terminal table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
README = Path(__file__).resolve().parent.parent / "docs" / "guides" / "benchmarks.md"


def _value(row: dict[str, Any]) -> str:
    value = row["value"]
    if str(row.get("target", "")).startswith("min r"):
        return f"r = {value:.6f}"
    if value != 0 and abs(value) < 0.01:
        return f"{value:.1e}"
    return f"{value:.3g}"  # three significant digits: a 0.598 must not read as 0.60


def _cell(text: object) -> str:
    """Text for a markdown table cell (a `|` would end the cell)."""
    return str(text).replace("|", "\\|")


def _seconds(row: dict[str, Any]) -> str:
    seconds = row.get("median_s")
    return "-" if seconds is None else f"{seconds:.3f}"


def machine_line(machine: dict[str, Any], repeats: int | None) -> str:
    load = machine.get("load_average") or ["?"]
    load_end = machine.get("load_average_end") or ["?"]
    peers = ", ".join(
        f"{name} {machine[name]}"
        for name in ("captum", "torchcam", "pytorch_grad_cam")
        if machine.get(name)
    )
    return (
        f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
        f"{machine.get('threads', '?')} torch threads, device {machine.get('device', '?')}; "
        f"torch {machine.get('torch', '?')}, torchvision {machine.get('torchvision', '?')}, "
        f"Python {machine.get('python', '?')}; {peers}; median of {repeats} repeats per "
        f"candidate, interleaved; 1-min load average {load[0]} at the start, {load_end[0]} at "
        f"the end; commit {machine.get('git_commit', '?')}."
    )


def _agreement(rows: list[dict[str, Any]], workload: str) -> str:
    """The smallest gated output correlation ("min r" rows) of a workload with its
    reference(s); other agreement rows (e.g. an AUC difference) have their own line."""
    values = [
        r["value"]
        for r in rows
        if r["workload"] == workload
        and r["candidate"].startswith("agree")
        and r.get("gate")
        and str(r.get("target", "")).startswith("min r")
    ]
    return f"{min(values):.4f}" if values else "-"


def render(results: dict[str, Any]) -> str:
    """The markdown table of gated speed/memory targets, then the machine line."""
    rows = results["rows"]
    lines = [
        "| workload | cnnvis median s | measured | target | result | outputs agree (min r) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        gated = row.get("gate") and row.get("target") is not None and row.get("value") is not None
        correlation = str(row.get("target", "")).startswith("min r")
        if not gated or (row["candidate"].startswith("agree") and correlation):
            continue
        result = "pass" if row["passed"] else "**FAIL**"
        lines.append(
            f"| `{row['workload']}` | {_seconds(row)} | {_value(row)} | {_cell(row['target'])} | "
            f"{result} | {_agreement(rows, row['workload'])} |"
        )
    gated = [r for r in rows if r.get("gate") and r.get("passed") is not None]
    passed = sum(bool(r["passed"]) for r in gated)
    lines += [
        "",
        f"{passed}/{len(gated)} gated targets pass (agreement rows included). "
        + machine_line(results["machine"], results.get("repeats")),
    ]
    return "\n".join(lines)


def write_readme(markdown: str, readme: Path = README) -> None:
    text = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{readme} has no {START} ... {END} markers")
    readme.write_text(pattern.sub(f"{START}\n{markdown}\n{END}", text), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a JSON file written by benchmarks.run")
    parser.add_argument(
        "--write", action="store_true", help="replace the table in docs/guides/benchmarks.md"
    )
    args = parser.parse_args(argv)
    markdown = render(json.loads(args.results.read_text(encoding="utf-8")))
    if args.write:
        write_readme(markdown)
    else:
        sys.stdout.write(markdown + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
