"""`cnnvis methods`: every registered method, what it is, its paper, needs and cost."""

from __future__ import annotations

import argparse
from typing import Any

from .. import method_rows
from .common import add_common, command_parser, dump_json, examples

ABOUT = "Every registered method: what it is, its paper, needs and cost."
EXAMPLES = """
    cnnvis methods
    cnnvis methods --json
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = command_parser(subparsers, "methods", ABOUT, examples(EXAMPLES))
    add_common(p)
    return p


# the keys of `cnnvis methods --json`, in its order (a subset of MethodInfo.to_row())
JSON_KEYS = ("name", "kind", "summary", "formula", "paper", "needs", "passes")


def run(args: argparse.Namespace) -> int:
    rows = method_rows.rows()  # the registry's rows, without importing torch
    if args.json:
        dump_json([{key: r[key] for key in JSON_KEYS} for r in rows])
        return 0
    width = max(len(r["name"]) for r in rows) + 2
    pad = " " * (width + 8)
    for r in rows:
        needs = ", ".join(r["needs"]) or "an image"
        print(f"{r['name']:<{width}}{r['kind']:<8}{r['summary']}")
        print(f"{pad}{r['formula']}")
        print(f"{pad}paper: {r['paper']}")
        print(f"{pad}needs: {needs}  ·  cost: {r['passes']}")
    print("\npixel: a map per input pixel (N, 3, H, W); cam: a map at a layer, upsampled (N, H, W)")
    return 0
