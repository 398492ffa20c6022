"""`cnnvis layers`: the model's layers with output shapes; the default layer marked."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import Any

from ..layers import list_layers
from .common import add_common, add_model_args, command_parser, dump_json, examples, load_model

ABOUT = "The model's layers with output shapes; the default layer marked."
EXAMPLES = """
    cnnvis layers                                   # the default model's layers
    cnnvis layers --model torchvision:resnet50 --weights none --filter 'layer4*'
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = command_parser(subparsers, "layers", ABOUT, examples(EXAMPLES))
    add_model_args(p)
    p.add_argument("--filter", default=None, help="glob over layer names, e.g. 'layer4*'")
    add_common(p)
    return p


def run(args: argparse.Namespace) -> int:
    model = load_model(args)
    size = model.preprocess.crop_size
    infos = {i.name: i for i in list_layers(model.module, (1, 3, size, size), args.filter)}
    order = [name for name, _ in model.module.named_modules() if name in infos]
    if args.json:
        dump_json([{**asdict(infos[n]), "spatial": infos[n].spatial} for n in order])
        return 0
    if not order:
        print(f"{model.name}: no layer matches {args.filter!r}", file=sys.stderr)
        return 0
    default = next((n for n in order if infos[n].default), None)
    print(f"{model.name}: {len(order)} layers, input 3x{size}x{size}")
    print("  * default layer for CAM methods (--layer auto)")
    print("  + a layer of `cnnvis sweep --layers all`")
    width = min(60, max(len(n) + 2 * n.count(".") for n in order) + 2)
    types = max(len(infos[n].type) for n in order)
    print(f"\n   {'layer':<{width}} {'type':<{types}}  output")
    for name in order:
        info = infos[name]
        mark = "*" if info.default else ("+" if info.sweep else " ")
        shape = "x".join(map(str, info.output_shape[1:])) if info.output_shape else "(not run)"
        calls = f"  (runs {info.calls}x)" if info.calls > 1 else ""
        label = "  " * name.count(".") + name
        print(f" {mark} {label:<{width}} {info.type:<{types}}  {shape}{calls}")
    if default is not None:
        print(f"\ndefault layer: {default}")
    return 0
