"""`cnnvis batch`: a whole dataset into maps and a Parquet index, resumable, locally or on a
Ray cluster."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import ImageError
from . import out_folder
from .common import (
    add_common,
    add_max_pixels,
    add_model_args,
    add_params,
    check_cmap,
    command_parser,
    dump_json,
    exit_code,
    load_model,
    parse_methods,
    parse_params,
    positive_int,
    set_seed,
)

DEFAULT_OUT = "cnnvis-out/batch"
EXAMPLES = """examples:
  cnnvis batch photos/ --out audit/                      # every image under photos/, Grad-CAM
  cnnvis batch pets/ --model torchvision:resnet50 --target label --methods grad-cam,gradient
  cnnvis batch 'shots/**/*.jpg' --out audit/ --png       # a glob (quoted), with overlay PNGs
  cnnvis batch list.csv --out audit/ --batch-size 64 --workers 8
  cnnvis batch photos/ --out audit/ --engine ray --device cuda --actors 4   # 4 GPUs
  RAY_ADDRESS=ray://head:10001 cnnvis batch /shared/photos --out audit/ --engine ray

INPUT is a folder (recursive), an ImageFolder tree (one sub-folder per class: the labels for
--target label), a glob, or a .csv (a 'path' column, optional 'label') / .txt list of paths.
Writes OUT/index/*.parquet (a row per image and map: source, sha256, prediction, label,
target, method, layer, map statistics, timing, error), OUT/maps/<path under INPUT>/METHOD[@LAYER]
.npz (and .png with --png) and OUT/run.json. Run it again to resume: images done with the
same content and settings are skipped; bad files are recorded as errors and retried.
"""
ABOUT = "Explain a whole dataset into maps and a Parquet index; resumable; local or on Ray."


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = command_parser(subparsers, "batch", ABOUT, EXAMPLES)
    p.add_argument("input", help="a folder, an ImageFolder tree, a glob, or a .csv/.txt list")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder ({DEFAULT_OUT})")
    out_folder.add_force(p)
    add_model_args(p)
    p.add_argument(
        "--methods",
        "--method",
        default="grad-cam",
        help="comma-separated methods, or all (default: %(default)s; see `cnnvis methods`)",
    )
    p.add_argument(
        "--layer", default="auto", help="layer(s) for CAM methods, comma-separated, or auto"
    )
    p.add_argument(
        "--target",
        default="top1",
        help="top1 (each image's best), label (class folders / CSV labels), an index or a name",
    )
    add_params(p, "integrated-gradients.steps=64")
    p.add_argument(
        "--batch-size", type=positive_int, default=16, help="images per forward (default: 16)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="decoding processes (default: 0, i.e. in this process, on 1-2 cores; else one per 4 cores, at most 4)",
    )
    p.add_argument("--png", action="store_true", help="also write a PNG overlay per map")
    p.add_argument("--cmap", default="jet", help="colormap of the CAM overlays (default: jet)")
    p.add_argument("--seed", type=int, default=0, help="seed for random-init weights (0)")
    add_max_pixels(p)
    p.add_argument("--no-compact", action="store_true", help="keep the index's part files")
    ray = p.add_argument_group("ray (--engine ray; pip install 'cnnvis[ray]')")
    ray.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: DataLoader workers and this process; ray: Ray Data with model actors "
        "(default: local)",
    )
    ray.add_argument(
        "--ray-address",
        default=None,
        help="a running cluster, e.g. ray://head:10001 or auto (default: RAY_ADDRESS, else a "
        "local Ray)",
    )
    ray.add_argument(
        "--actors",
        type=positive_int,
        default=1,
        help="model-holding actors, e.g. one per GPU of the cluster (default: 1)",
    )
    ray.add_argument(
        "--gpus-per-actor",
        type=float,
        default=None,
        help="GPUs each actor holds (default: 1 with --device cuda, else 0)",
    )
    ray.add_argument(
        "--cpus-per-actor",
        type=float,
        default=None,
        help="CPUs (and torch threads) each actor holds (default: 1 with a GPU, else the "
        "cluster's CPUs less one, shared by the actors)",
    )
    ray.add_argument(
        "--decode-tasks",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="read and decode the files in separate CPU tasks rather than in the actors "
        "(default: with GPU actors only)",
    )
    add_common(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..batch import run as run_batch

    methods = parse_methods(args.methods)
    params = parse_params(args.param, methods)
    if args.png:
        check_cmap(args.cmap)
    set_seed(args.seed)
    if args.engine == "ray":
        device, args.device = args.device, None  # the actors place the model
    else:
        device = None
    model = load_model(args)
    out_folder.claim(Path(args.out), "batch", args.force)
    summary = run_batch(
        args.input,
        args.out,
        model,
        methods,
        args.layer,
        args.target,
        device=device,
        output=args.output,
        params=params,
        batch_size=args.batch_size,
        workers=args.workers,
        engine=args.engine,
        ray_address=args.ray_address,
        actors=args.actors,
        gpus_per_actor=args.gpus_per_actor,
        cpus_per_actor=args.cpus_per_actor,
        decode_tasks=args.decode_tasks,
        png=args.png,
        cmap=args.cmap,
        max_pixels=args.max_pixels,
        progress=False if (args.quiet or args.json) else None,
        compact=not args.no_compact,
    )
    if args.json:
        dump_json(summary.as_dict())
    elif not args.quiet:
        print(summary)
    if summary.failures and not args.json:  # each was named as it failed; all of them again
        n = len(summary.failures)
        print(f"cnnvis: {n} of {summary.total} file{'s' * (n != 1)} failed:", file=sys.stderr)
        for line in summary.failure_lines():
            print(f"  {line}", file=sys.stderr)
    if summary.total == 0:
        print("cnnvis: error: INPUT holds no images", file=sys.stderr)
        return ImageError.exit_code
    return exit_code(summary.done + summary.skipped, summary.failed)
