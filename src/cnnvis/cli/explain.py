"""`cnnvis explain`: images through one or several methods; figures, maps and a report.

Writes into `--out` (default `./cnnvis-out`): one folder per image with its figures, one PNG per
map, the raw maps (`maps.npz`) and `manifest.json`, and `report.html` at the top. Errors about
one image are reported and the others go on (exit code 1); errors about the whole run (model,
method, layer, target) stop it with their own exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..api import explain_many
from ..detection import BoxTarget
from ..errors import CnnvisError
from ..layers import requested_layers
from ..manifest import run_facts
from ..methods import get_method
from ..model import LoadedModel
from ..progress import reporting
from ..targets import UnitTarget, parse_target
from . import out_folder, output
from .common import (
    Progress,
    StageProgress,
    add_common,
    add_max_pixels,
    add_model_args,
    add_outputs,
    add_params,
    check_cmap,
    command_parser,
    examples,
    exit_code,
    load_images,
    load_model,
    method_names,
    parse_methods,
    parse_params,
    positive_int,
    set_seed,
)
from .detections import write_detections

log = logging.getLogger("cnnvis")

ABOUT = "Explain images with one or several methods; write figures and maps."
EXAMPLES = """
    cnnvis explain                                  # the bundled cat, default model
    cnnvis explain photo.jpg --method grad-cam,guided-backprop
    cnnvis explain a.jpg b.png --model torchvision:resnet50 --layer layer4 --method all
    cnnvis explain sample:coffee --target espresso --out results/
    cnnvis explain photos/ --method grad-cam        # every image in the folder's tree
    cnnvis explain photo.jpg --target 281 --cmap inferno --json

    Writes OUT/<image>/ (figure.png, comparison.png, one PNG per map, maps.npz,
    manifest.json) and OUT/report.html, a page that opens offline.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = command_parser(subparsers, "explain", ABOUT, examples(EXAMPLES))
    p.add_argument(
        "images", nargs="*", help="image files, folders or sample:NAME (default: sample:cat)"
    )
    add_model_args(p)
    p.add_argument(
        "--method",
        default="gradient,guided-backprop,grad-cam,guided-grad-cam",
        help=f"comma-separated, or all: {', '.join(method_names())} (default: %(default)s; "
        "`cnnvis methods` gives the cost of each)",
    )
    p.add_argument(
        "--layer",
        default="auto",
        help="layer for CAM methods (see `cnnvis layers`), several comma-separated, or auto "
        "(the last with spatial output)",
    )
    add_params(p, "integrated-gradients.steps=64")
    add_outputs(p)
    out_folder.add_force(p)
    p.add_argument(
        "--top-k", type=positive_int, default=5, help="predictions to show per image (default: 5)"
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        help="images per recorded forward (default: 8); all methods share each forward",
    )
    add_max_pixels(p)
    add_common(p)
    return p


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    methods = parse_methods(args.method)
    params = parse_params(args.param, methods)
    check_cmap(args.cmap)
    set_seed(args.seed)
    sources = args.images or ["sample:cat"]
    t = time.perf_counter()
    model = load_model(args)
    model_seconds = time.perf_counter() - t
    t = time.perf_counter()
    loaded, failed = load_images(sources, args.max_pixels)
    image_seconds = (time.perf_counter() - t) / max(1, len(sources))
    out = Path(args.out)
    facts = run_facts("explain", args.argv, model, args.target, args.seed)
    facts["methods"] = methods
    entries: list[dict[str, Any]] = []
    if loaded:
        out_folder.claim(out, "explain", args.force)
        folders = output.unique_dirs(out, [s for s, _ in loaded])
        items = list(zip(loaded, folders, strict=True))
        layers = _resolve_layers(args, model, methods)
        progress = Progress(args, len(items), "explaining")
        stages = StageProgress(args)  # the maps and each multi-pass method's passes
        skipped: dict[str, CnnvisError] = {}
        try:
            with reporting(stages):
                for b in range(0, len(items), args.batch_size):
                    batch = items[b : b + args.batch_size]
                    entries += _explain_batch(
                        args, model, methods, layers, params, batch, skipped, progress
                    )
        finally:
            stages.close()
            progress.close()
        for name, error in skipped.items():
            print(f"cnnvis: warning: {name} skipped: {error}", file=sys.stderr)
        facts["methods"] = [m for m in methods if m not in skipped]
        facts["layer"] = ", ".join(
            sorted({m["layer"] for e in entries for m in e["maps"]} - {None})
        )
        for entry in entries:
            entry["timings"]["load_model"] = model_seconds
            entry["timings"]["load_image"] = image_seconds
            output.write_explain_manifest(out, entry, facts)
    facts["timings"] = {"load_model": model_seconds, "total": time.perf_counter() - start}
    report = output.write_report(out, facts, entries, failed) if entries else None
    output.print_summary(args, out, facts, entries, failed, report)
    return exit_code(len(entries), len(failed))


def _resolve_layers(
    args: argparse.Namespace, model: LoadedModel, methods: Sequence[str]
) -> list[str] | None:
    """--layer as names; 'auto' resolved once here (and logged once), not once per batch."""
    size = model.preprocess.crop_size
    needed = any(get_method(m).needs_layer for m in methods)
    target = parse_target(args.target)
    names = requested_layers(
        model.module,
        args.layer,
        needed=needed,
        input_shape=(1, 3, size, size),
        unit_layer=target.layer if isinstance(target, UnitTarget) else None,
    )
    return names or None


def _explain_batch(
    args: argparse.Namespace,
    model: LoadedModel,
    methods: list[str],
    layers: list[str] | None,
    params: dict[str, dict[str, Any]],
    batch: list[tuple[tuple[str, Any], Path]],
    skipped: dict[str, CnnvisError],
    progress: Progress,
) -> list[dict[str, Any]]:
    """One recorded forward for the batch, then each image's files."""
    t = time.perf_counter()
    failures: dict[str, CnnvisError] = {}
    results = explain_many(
        model,
        [image for (_, image), _ in batch],
        methods,
        layers,
        parse_target(args.target),
        output=args.output,
        failures=failures,
        top_k=args.top_k,
        params=params,
    )
    skipped.update(failures)
    if not results:
        raise next(iter(failures.values()))
    batch_seconds = time.perf_counter() - t
    explanations = list(results.values())
    entries = []
    for i, ((source, image), folder) in enumerate(batch):
        t = time.perf_counter()
        entry = output.write_image_outputs(folder, source, image, i, explanations, args.cmap)
        entry["timings"] = {
            "explain_batch": batch_seconds,
            "batch_size": len(batch),
            "explain": batch_seconds / len(batch),
            "render": time.perf_counter() - t,
        }
        entries.append(entry)
        progress.step(note=source)
    target = parse_target(args.target)
    if isinstance(target, BoxTarget):  # a detector: its boxes printed and drawn
        sources, images = [s for (s, _), _ in batch], [image for (_, image), _ in batch]
        say = not (args.json or args.quiet)
        folders = [folder for _, folder in batch]
        write_detections(model, target, sources, images, folders, explanations, say=say)
    return entries
