"""`cnnvis classify`: top-k predictions with class names and probabilities."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from ..api import classify
from .common import (
    add_common,
    add_max_pixels,
    add_model_args,
    command_parser,
    dump_json,
    examples,
    exit_code,
    load_images,
    load_model,
    positive_int,
    print_predictions,
)

ABOUT = "Top-k predictions with class names and probabilities."
EXAMPLES = """
    cnnvis classify                                 # the bundled cat
    cnnvis classify sample:cat sample:coffee --top-k 3
    cnnvis classify photo.jpg --model torchvision:resnet50 --json
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = command_parser(subparsers, "classify", ABOUT, examples(EXAMPLES))
    p.add_argument(
        "images", nargs="*", help="image files, folders or sample:NAME (default: sample:cat)"
    )
    add_model_args(p)
    p.add_argument("--top-k", type=positive_int, default=5, help="classes per image (default: 5)")
    add_max_pixels(p)
    add_common(p)
    return p


def run(args: argparse.Namespace) -> int:
    model = load_model(args)
    loaded, failed = load_images(args.images or ["sample:cat"], args.max_pixels)
    results = []
    if loaded:
        preds = classify(model, [image for _, image in loaded], args.top_k, output=args.output)
        for (source, _), p in zip(loaded, preds, strict=True):
            results.append({"source": source, "predictions": [asdict(x) for x in p]})
            if not args.json:
                print_predictions(source, p)
    if args.json:
        dump_json({"model": model.name, "images": results, "failed": failed})
    return exit_code(len(loaded), len(failed))
