"""`cnnvis sweep`: the tutorial's per-layer loop in one pass, a method at every layer."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..api import sweep
from ..errors import ImageError
from ..layers import MAX_LAYERS
from ..manifest import run_facts
from ..progress import reporting
from ..targets import parse_target
from . import out_folder, output
from .common import (
    Progress,
    StageProgress,
    add_common,
    add_max_pixels,
    add_model_args,
    add_outputs,
    check_cmap,
    command_parser,
    examples,
    load_images,
    load_model,
    method_names,
    parse_method,
    positive_int,
    relative,
    set_seed,
)

ABOUT = "The tutorial's per-layer loop in one pass: a method at every layer."
EXAMPLES = """
    cnnvis sweep                                    # guided Grad-CAM at every layer, the cat
    cnnvis sweep photo.jpg --method grad-cam --layers 'blocks.?'   # the 7 stages
    cnnvis sweep photo.jpg --model torchvision:vgg16 --layers 'features.*'   # the tutorial's 31
    cnnvis sweep photo.jpg --method layer-cam --layers 'blocks.?' --fuse mean
    cnnvis sweep photo.jpg --method grad-cam --layers 'blocks.*' --max-layers 100

    A pattern matches the layers a map is useful at (blocks, convolutions; not Identity,
    dropout or squeeze-excitation gates), at most --max-layers of them (outermost first).

    Writes OUT/<image>/sweep-METHOD.png (the grid), sweep-METHOD/LAYER.png,
    sweep-METHOD.npz, sweep-METHOD.json and OUT/report.html; with --fuse HOW also
    sweep-METHOD/fused-HOW.png (and the key fused-HOW in the .npz).
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = command_parser(subparsers, "sweep", ABOUT, examples(EXAMPLES))
    p.add_argument("image", nargs="?", default="sample:cat", help="image file or sample:NAME")
    add_model_args(p)
    p.add_argument(
        "--method",
        default="guided-grad-cam",
        help=f"a method that takes a layer: {', '.join(method_names(layer=True))} "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--layers",
        default="all",
        help="all (every block along the main path), or a glob such as 'features.*'",
    )
    p.add_argument(
        "--max-layers",
        type=positive_int,
        default=MAX_LAYERS,
        help="at most this many layers from all or a glob, the outermost first (default: "
        "%(default)s)",
    )
    p.add_argument(
        "--fuse",
        choices=("mean", "max"),
        help="also fuse the layers' CAMs into one map (ReLU, min-max per layer, then the mean "
        "or the maximum; cnnvis.fuse_layers); for CAM methods",
    )
    add_outputs(p)
    out_folder.add_force(p)
    add_max_pixels(p)
    add_common(p)
    return p


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    method = parse_method(args.method).name
    check_cmap(args.cmap)
    set_seed(args.seed)
    t = time.perf_counter()
    model = load_model(args)
    model_seconds = time.perf_counter() - t
    loaded, failed = load_images([args.image], args.max_pixels)
    if not loaded:
        return ImageError.exit_code
    out = Path(args.out)
    out_folder.claim(out, "sweep", args.force)
    source, image = loaded[0]
    t = time.perf_counter()
    spec = parse_target(args.target)
    stages = StageProgress(args)
    try:
        with reporting(stages):
            result = sweep(
                model, image, method, args.layers, spec, output=args.output,
                max_layers=args.max_layers,
            )  # fmt: skip
    finally:
        stages.close()
    sweep_seconds = time.perf_counter() - t
    folder = output.unique_dirs(out, [source])[0]
    folder.mkdir(parents=True, exist_ok=True)
    progress = Progress(args, len(result) + 1, "drawing", unit="layer")
    t = time.perf_counter()
    try:
        maps, figure = output.write_sweep_outputs(folder, result, args.cmap, args.fuse, progress)
    finally:
        progress.close()
    name = f"sweep-{result.method}"
    first = next(iter(result.explanations.values()))
    entry = output.image_entry(source, folder, image, first, 0) | {
        "maps": maps,
        "files": {
            "input": "input.png",
            "sweep": figure.name,
            "maps": f"{name}.npz",
            "manifest": f"{name}.json",
        },
        "timings": {
            "load_model": model_seconds,
            "sweep": sweep_seconds,
            "render": time.perf_counter() - t,
        },
    }
    facts = run_facts("sweep", args.argv, model, args.target, args.seed)
    facts["methods"] = [result.method]
    facts["layer"] = f"{args.layers} ({len(result)} layers)"
    facts["timings"] = {"load_model": model_seconds, "total": time.perf_counter() - start}
    output.write_sweep_manifest(out, entry, facts, result.method)
    report = output.write_report(out, facts, [entry], failed)
    if args.json:
        output.print_summary(args, out, facts, [entry], failed, report)
        return 0
    target = entry["target"]
    if args.quiet:
        print(f"{source}: {result.method} over {len(result)} layers -> {relative(figure)}")
        print(f"report: {relative(report)}")
        return 0
    seconds = time.perf_counter() - start  # wall-clock, from the start of the command
    print(
        f"{result.method} over {len(result)} layers of {model.name} for {target['name']} "
        f"({target['index']}, p = {target['probability']:.2f}) in {seconds:.2f} s "
        f"(model {model_seconds:.2f} s, maps {sweep_seconds:.2f} s, drawing "
        f"{entry['timings']['render']:.2f} s)"
    )
    print(f"  figure: {relative(figure)}")
    print(f"  files:  {relative(folder)}/  ({len(maps)} layer PNGs in {name}/, {name}.npz)")
    print(f"report: {relative(report)}")
    return 0
