"""`cnnvis features`: pictures of what a class, channel or neuron responds to, a grid of a
layer's channels, or the image patches that excite a channel most."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from ..features import (
    DEFAULT_STEPS,
    FeatureError,
    FeatureVisualization,
    Robustness,
    channel_grid,
    grid_figure,
    make_grid,
    maximize,
    parse_feature_target,
    save_image,
    top_patches,
)
from ..features.optimize import DEFAULT_DECAY, DEFAULT_LR
from ..model import LoadedModel
from ..progress import reporting
from ..targets import UnitTarget
from . import out_folder
from .common import StageProgress, add_common, add_model_args, command_parser, load_model

EXAMPLES = """examples:
  cnnvis features --target goldfish                  # the picture of a class (name or index)
  cnnvis features --target class:967 --steps 256 --seed 3
  cnnvis features --target blocks.3:5                # channel 5 of blocks.3 (mean over space)
  cnnvis features --target blocks.3:5@7,7            # one neuron of that channel
  cnnvis features --layer blocks.3 --channels 16     # its first 16 channels, as one grid
  cnnvis features --top-patches photos/ --layer blocks.3 --channel 5 --k 9
"""
DEFAULT_OUT = "cnnvis-out/features"
ABOUT = "Feature visualization: the input a class, channel or neuron responds to most."


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = command_parser(subparsers, "features", ABOUT, EXAMPLES)
    add_model_args(p)
    what = p.add_argument_group("what to show (one of --target, --layer, --top-patches)")
    what.add_argument(
        "--target",
        action="append",
        help="class index or name, class:INDEX, LAYER:CHANNEL (channel mean), "
        "LAYER:CHANNEL@max or LAYER:CHANNEL@Y,X (one neuron); repeat for several",
    )
    what.add_argument("--layer", help="a layer by dotted name (see `cnnvis layers`)")
    what.add_argument(
        "--channels",
        default=None,
        help="with --layer: N (the first N), A-B or a comma list (default: 16)",
    )
    what.add_argument(
        "--top-patches", metavar="DIR", help="a folder of images: the patches that excite "
        "--channel of --layer most",
    )  # fmt: skip
    what.add_argument("--channel", type=int, help="with --top-patches: the channel")
    what.add_argument("--k", type=int, default=9, help="with --top-patches: how many (9)")
    what.add_argument("--batch-size", type=int, default=16, help="with --top-patches (16)")
    what.add_argument(
        "--patch-size", type=int, default=None, help="patch side in pixels (default: the "
        "layer's receptive field, at most the input)",
    )  # fmt: skip
    opt = p.add_argument_group("optimization")
    opt.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"({DEFAULT_STEPS})")
    opt.add_argument("--size", type=int, default=None, help="pixels (the model's input: 224)")
    opt.add_argument("--seed", type=int, default=0, help="same seed, same picture (0)")
    opt.add_argument("--lr", type=float, default=DEFAULT_LR, help=f"Adam's rate ({DEFAULT_LR})")
    opt.add_argument("--tv", type=float, default=0.0, help="total-variation weight (0)")
    opt.add_argument("--blur", type=float, default=0.0, help="blur-penalty weight (0)")
    robust = Robustness()
    opt.add_argument(
        "--jitter", type=float, default=robust.jitter,
        help="random shift, a fraction of the side (0.071: 16 px at 224)",
    )  # fmt: skip
    opt.add_argument("--degrees", type=float, default=robust.degrees, help="random turn (15)")
    opt.add_argument(
        "--scale", type=float, nargs=2, default=robust.scale, metavar=("MIN", "MAX"),
        help="random zoom range (0.8 1.2)",
    )  # fmt: skip
    opt.add_argument(
        "--decay", type=float, default=DEFAULT_DECAY,
        help=f"1/f**decay spectrum scaling ({DEFAULT_DECAY})",
    )  # fmt: skip
    opt.add_argument("--pixels", action="store_true", help="optimize raw pixels, not Fourier")
    opt.add_argument("--no-decorrelate", action="store_true", help="plain RGB colours")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder ({DEFAULT_OUT})")
    out_folder.add_force(p)
    add_common(p)
    return p


def run(args: argparse.Namespace) -> int:
    mode = _mode(args)
    model = load_model(args)
    out = Path(args.out)
    out_folder.claim(out, "features", args.force)
    # on a terminal the optimization draws its own bar; elsewhere a line per stage on stderr
    on_terminal = sys.stdout.isatty() and sys.stderr.isatty()
    stages = StageProgress(args)
    try:
        with reporting(None if on_terminal else stages):
            if mode == "patches":
                summary = _top_patches(args, model, out)
            elif mode == "grid":
                summary = _grid(args, model, out)
            else:
                summary = _targets(args, model, out)
    finally:
        stages.close()
    (out / "features.json").write_text(json.dumps(summary, indent=2, default=str))
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    return 0


# ----------------------------------------------------------------------------- modes


def _mode(args: argparse.Namespace) -> str:
    """'targets', 'grid' or 'patches', after checking the flags fit together."""
    if args.top_patches:
        if args.target or args.channels:
            raise FeatureError("--top-patches goes with --layer and --channel, not --target")
        if args.layer is None or args.channel is None:
            raise FeatureError("--top-patches DIR needs --layer L and --channel C")
        return "patches"
    if args.channel is not None:
        raise FeatureError("--channel goes with --top-patches; for a picture use --target L:C")
    if args.target:
        if args.layer or args.channels:
            raise FeatureError("give --target, or --layer with --channels, not both")
        return "targets"
    if args.layer:
        return "grid"
    raise FeatureError(
        "say what to show: --target T (a class or LAYER:CHANNEL), --layer L [--channels N] "
        "(a grid), or --top-patches DIR --layer L --channel C"
    )


def _targets(args: argparse.Namespace, model: LoadedModel, out: Path) -> dict[str, Any]:
    """One picture per --target; targets of the same layer (or all classes) in one batch."""
    groups: dict[str | None, list[Any]] = {}
    for spec in args.target:
        parsed = parse_feature_target(spec)
        groups.setdefault(parsed.layer if isinstance(parsed, UnitTarget) else None, []).append(
            parsed
        )
    items = []
    for targets in groups.values():
        result = maximize(model, targets, **_options(args))
        for i, name in enumerate(result.labels):
            path = save_image(result.images[i], out / f"{_slug(name)}.png")
            items.append(_item(result, i, path))
            if not args.json:
                print(_line(items[-1]))
    return {**_settings(args, model), "mode": "targets", "images": items}


def _grid(args: argparse.Namespace, model: LoadedModel, out: Path) -> dict[str, Any]:
    """The chosen channels of --layer, optimized as one batch; one PNG each and a grid."""
    channels = _channels(args.channels)
    result = channel_grid(model, args.layer, channels=channels, **_options(args))
    items = []
    for i, channel in enumerate(channels):
        path = save_image(result.images[i], out / _slug(args.layer) / f"channel-{channel:04d}.png")
        items.append(_item(result, i, path))
    grid = save_image(make_grid(result.images), out / f"{_slug(args.layer)}-channels.png")
    titles = [f"{c}: {s:.3g}" for c, s in zip(channels, result.scores.tolist(), strict=True)]
    suptitle = f"{args.layer}: channels {_span(channels)}  ·  {model.name}"
    figure = _save_figure(result.images, titles, suptitle, out / f"{_slug(args.layer)}-figure.png")
    if not args.json:
        print(f"{args.layer}: {len(channels)} channels, {result.steps} steps at {result.size} px")
        for item in items:
            print("  " + _line(item))
        print(f"grid: {grid}\nfigure: {figure}")
    summary = {**_settings(args, model), "mode": "grid", "layer": args.layer}
    return {**summary, "grid": str(grid), "figure": str(figure), "images": items}


def _top_patches(args: argparse.Namespace, model: LoadedModel, out: Path) -> dict[str, Any]:
    """The --k patches of the --top-patches folder that excite --channel of --layer most."""
    found = top_patches(
        model,
        args.layer,
        args.channel,
        args.top_patches,
        k=args.k,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
    )
    stem = f"{_slug(args.layer)}-channel-{args.channel:04d}-top{len(found)}"
    grid = save_image(make_grid(found.patches), out / f"{stem}.png")
    titles = [
        f"{Path(s).stem}\n{a:.3g}"
        for s, a in zip(found.sources, found.activations.tolist(), strict=True)
    ]
    rf = found.receptive_field
    suptitle = f"{args.layer}:{args.channel}, top {len(found)} of {found.images_seen} images"
    figure = _save_figure(found.patches, titles, suptitle, out / f"{stem}-figure.png")
    rows = [
        {"source": s, "activation": a, "position": p, "box": b}
        for s, a, p, b in zip(
            found.sources, found.activations.tolist(), found.positions, found.boxes, strict=True
        )
    ]
    if not args.json:
        print(
            f"{args.layer}:{args.channel}: top {len(found)} of {found.images_seen} images; "
            f"receptive field {rf.size} px, stride {rf.stride[0]:g}, patches "
            f"{found.patches.shape[-1]} px"
        )
        for row in rows:
            print(f"  {row['activation']:10.4g}  {row['source']}  at {row['position']}")
        print(f"grid: {grid}\nfigure: {figure}")
    return {
        **_settings(args, model),
        "mode": "top-patches",
        "layer": args.layer,
        "channel": args.channel,
        "receptive_field": rf.__dict__,
        "grid": str(grid),
        "figure": str(figure),
        "patches": rows,
    }


# ----------------------------------------------------------------------------- helpers


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """`maximize` keyword arguments from the optimization flags."""
    return {
        "steps": args.steps,
        "size": args.size,
        "seed": args.seed,
        "lr": args.lr,
        "tv": args.tv,
        "blur": args.blur,
        "decay_power": args.decay,
        "fourier": not args.pixels,
        "decorrelate": not args.no_decorrelate,
        "robustness": Robustness(args.jitter, tuple(args.scale), args.degrees),
        "progress": not (args.quiet or args.json) and sys.stdout.isatty() and sys.stderr.isatty(),
        "output": args.output,
    }


def _channels(spec: str | None) -> list[int]:
    """'16' -> 0..15, '4-7' -> 4..7, '3,9,12' -> [3, 9, 12]."""
    text = (spec or "16").replace(" ", "")
    if text.isdigit():
        return list(range(int(text)))
    span = re.fullmatch(r"(\d+)-(\d+)", text)
    if span:
        return list(range(int(span[1]), int(span[2]) + 1))
    if re.fullmatch(r"\d+(,\d+)*", text):
        return [int(c) for c in text.split(",")]
    raise FeatureError(f"--channels takes N, A-B or a comma list of channels, got {spec!r}")


def _settings(args: argparse.Namespace, model: LoadedModel) -> dict[str, Any]:
    options = {k: v for k, v in _options(args).items() if k not in ("progress", "robustness")}
    size = args.size or model.preprocess.crop_size
    robust = {"jitter": args.jitter, "scale": list(args.scale), "degrees": args.degrees}
    return (
        {"model": model.name, "weights": model.weights, "out": str(args.out)}
        | options
        | {
            "size": size,
            "robustness": robust,
        }
    )


def _item(result: FeatureVisualization, i: int, path: Path) -> dict[str, Any]:
    return {
        "target": result.labels[i],
        "score": float(result.scores[i]),
        "grey_score": float(result.grey_scores[i]),
        "path": str(path),
    }


def _line(item: dict[str, Any]) -> str:
    return (
        f"{item['target']}: {item['score']:.4g} (grey image: {item['grey_score']:.4g}) "
        f"-> {item['path']}"
    )


def _span(channels: list[int]) -> str:
    if channels == list(range(channels[0], channels[-1] + 1)) and len(channels) > 2:
        return f"{channels[0]}-{channels[-1]}"
    return ",".join(map(str, channels))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "features"


def _save_figure(images: Any, titles: list[str], suptitle: str, path: Path) -> Path:
    from ..render import save_figure

    return save_figure(grid_figure(images, titles, suptitle), path)
