"""`cnnvis evaluate`: faithfulness, localisation and sanity checks of methods on images, each
beside baselines; a table in the terminal, CSV, PNG figures and an HTML page."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import ImageError
from ..evaluate import Evaluation, EvaluationError, evaluate
from ..evaluate.inputs import image_sources
from ..evaluate.progress import seconds_left
from ..evaluate.saving import to_json
from ..images import load_image
from ..targets import UnitTarget, parse_target
from . import out_folder
from .common import (
    add_common,
    add_model_args,
    add_params,
    command_parser,
    dump_json,
    exit_code,
    load_model,
    parse_methods,
    parse_params,
    positive_int,
    relative,
)

DEFAULT_IMAGES = (
    "sample:cat",
    "sample:coffee",
    "sample:rocket",
    "sample:motorcycle",
    "sample:camera",
)  # the samples with a clear ImageNet object, all with bundled boxes
DEFAULT_METHODS = "grad-cam,gradient,guided-backprop"
DEFAULT_OUT = "cnnvis-out/evaluate"
EXAMPLES = """examples:
  cnnvis evaluate sample:cat                        # one image in seconds (the quick protocol)
  cnnvis evaluate                                   # 5 sample photos, grad-cam/gradient/guided-backprop
  cnnvis evaluate photos/ --thorough                # the published protocol: 100 steps, ROAD, ...
  cnnvis evaluate photos/ --boxes boxes.json --methods grad-cam,score-cam
  cnnvis evaluate sample:coffee --metrics sanity --methods gradient,guided-backprop,grad-cam
  cnnvis evaluate photo.jpg --model torchvision:resnet50 --substrate blur --json

protocols: quick (default): deletion/insertion in 6 steps, 2 random draws, no ROAD unless
named (then 3 fractions); --thorough: 100 steps, 8 random draws, ROAD at 9 fractions. The
forward passes are announced before the run; progress goes to stderr (--quiet: none).

metrics: deletion, insertion, average-drop, increase, road-morf, road-lerf (group
faithfulness; road = both), pointing-game, energy-pointing-game (group localisation, where
--boxes has the image; the samples have bundled boxes), cascading, independent (group sanity:
weight randomization on a copy of the model), or all. Each method is compared with each
baseline over the images (paired bootstrap interval, Wilcoxon signed-rank test, rank-biserial
effect: better, worse or no evidence; 6 images at least). Writes OUT/scores.csv,
summary.csv, verdicts.csv, curves.csv, randomization.csv, PNG figures, evaluation.json and
evaluation.html.

boxes (JSON): {"space": "input", "images": {"photo.jpg": [{"label": "dog", "box": [x0, y0,
x1, y1], "classes": [207]}]}}; CSV: image,label,x0,y0,x1,y1[,classes][,space]. Coordinates are
model-input pixels after resize and centre crop ("space": "image" for original pixels);
x1, y1 excluded; "mask": "file.png" instead of "box" for masks.
"""
ABOUT = "Can the maps be trusted? Faithfulness, localisation and sanity checks vs baselines."


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = command_parser(subparsers, "evaluate", ABOUT, EXAMPLES)
    p.add_argument(
        "images",
        nargs="*",
        help="image files, folders or sample:NAME (default: sample:cat, coffee, rocket, motorcycle, "
        "camera)",
    )
    add_model_args(p)
    p.add_argument(
        "--methods", default=DEFAULT_METHODS, help=f"comma-separated or all ({DEFAULT_METHODS})"
    )
    p.add_argument(
        "--metrics",
        default=None,
        help="comma-separated metrics or groups: faithfulness, localisation, sanity, all "
        "(default: deletion, insertion, average-drop, increase, localisation; --thorough: "
        "faithfulness, localisation)",
    )
    p.add_argument(
        "--boxes",
        default=None,
        help="box/mask file, JSON or CSV (default: the bundled sample boxes)",
    )
    p.add_argument("--layer", default="auto", help="layer for CAM methods (default: auto)")
    p.add_argument("--target", default="top1", help="class to explain: top1, an index or a name")
    proto = p.add_argument_group("protocol")
    proto.add_argument(
        "--thorough",
        action="store_true",
        help="the published protocol (100 steps, 8 random draws, ROAD at 9 fractions) instead "
        "of the quick one (6 steps, 2 draws, no ROAD unless named)",
    )
    proto.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="deletion/insertion steps (quick 6, thorough 100)",
    )
    proto.add_argument(
        "--substrate",
        default="mean",
        help="what deleted pixels become: mean (0 in normalized input), black, blur, or a number (mean)",
    )
    proto.add_argument(
        "--insertion-substrate", default="blur", help="insertion's start (blur: kernel 11, sigma 5)"
    )
    proto.add_argument(
        "--road-fractions",
        default=None,
        help="fractions of pixels ROAD removes (quick 0.25,0.5,0.75; thorough 0.1,0.2,...,0.9)",
    )
    proto.add_argument(
        "--road-noise", type=float, default=0.01, help="ROAD imputation noise (0.01)"
    )
    proto.add_argument(
        "--baselines",
        default="random,centre,edges,reversed",
        help="baselines shown beside the methods (%(default)s)",
    )
    proto.add_argument(
        "--random-draws",
        type=positive_int,
        default=None,
        help="random maps averaged (quick 2, thorough 8)",
    )
    proto.add_argument(
        "--random-grid", type=positive_int, default=7, help="random map cells per side (7)"
    )
    proto.add_argument(
        "--tolerance", type=float, default=15.0, help="pointing-game tolerance, pixels (15)"
    )
    proto.add_argument(
        "--randomization-groups",
        type=positive_int,
        default=None,
        help="sanity checks: randomize only the top N groups (default: all)",
    )
    proto.add_argument(
        "--batch-size", type=positive_int, default=32, help="inputs per forward (32)"
    )
    proto.add_argument("--seed", type=int, default=0, help="same seed, same numbers (0)")
    add_params(p, "score-cam.batch_size=16")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder ({DEFAULT_OUT})")
    p.add_argument("--no-files", action="store_true", help="print the results only, write nothing")
    out_folder.add_force(p)
    add_common(p)
    return p


def _substrate(text: str) -> str | float:
    try:
        return float(text)
    except ValueError:
        return text.strip()


def _fractions(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise EvaluationError(
            f"--road-fractions must be numbers like 0.1,0.5,0.9, got {text!r}"
        ) from None


def _sources(images: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    """The readable images (folders expanded); the unreadable ones reported and kept aside."""
    good, failed = [], []
    for name, source in image_sources(images or list(DEFAULT_IMAGES)):
        try:
            load_image(source)
            good.append(name)
        except ImageError as error:
            print(f"cnnvis: error: {name}: {error}", file=sys.stderr)
            failed.append({"source": name, "error": str(error)})
    return good, failed


def run(args: argparse.Namespace) -> int:
    methods = parse_methods(args.methods)
    target = parse_target(args.target)
    if isinstance(target, UnitTarget):
        raise EvaluationError("evaluate explains a class (top1, an index or a name), not a unit")
    if not (target is None or isinstance(target, int | str)):
        raise EvaluationError(
            f"evaluate explains a class (top1, an index or a name), not {args.target!r}"
        )
    good, failed = _sources(list(args.images))
    if not good:
        return exit_code(0, len(failed))
    model = load_model(args)
    if not args.no_files:
        out_folder.claim(Path(args.out), "evaluate", args.force)
    layer = args.layer
    progress = ProgressDisplay(enabled=not (args.quiet or args.json))
    try:
        result = _evaluate(args, model, good, methods, layer, target, progress)
    finally:
        progress.close()
    written: dict[str, Path] = {}
    if not args.no_files:
        written = result.save(Path(args.out))
    if args.json:
        summary = to_json(result)
        summary["files"] = {name: relative(path) for name, path in written.items()}
        summary["failed"] = failed
        dump_json(summary)
    else:
        print(result.table())
        if written:
            page = written.get("evaluation.html")
            print(
                f"\nwrote {len(written)} files to {relative(Path(args.out))}"
                + (f"; open {relative(page)}" if page else "")
            )
    return exit_code(len(good), len(failed))


def _evaluate(
    args: argparse.Namespace,
    model: Any,
    images: list[str],
    methods: list[str],
    layer: str,
    target: Any,
    progress: ProgressDisplay,
) -> Evaluation:
    """`evaluate` with the command line's settings (the protocol's where none is given)."""
    return evaluate(
        model,
        images,
        methods,
        args.metrics,
        protocol="thorough" if args.thorough else "quick",
        boxes=args.boxes,
        layer=layer,
        target=target,
        output=args.output,
        steps=args.steps,
        substrate=_substrate(args.substrate),
        insertion_substrate=_substrate(args.insertion_substrate),
        road_fractions=_fractions(args.road_fractions),
        road_noise=args.road_noise,
        baselines=[b.strip() for b in args.baselines.split(",") if b.strip()],
        random_grid=args.random_grid,
        random_draws=args.random_draws,
        tolerance=args.tolerance,
        randomization_groups=args.randomization_groups,
        batch_size=args.batch_size,
        seed=args.seed,
        params=parse_params(args.param, methods),
        progress=progress,
    )


class ProgressDisplay:
    """The evaluation's progress on stderr, in forward passes: a bar with the time left on a
    terminal; otherwise a line when a stage (an image and what runs on it) starts and every
    `every` seconds within a long one; nothing when not `enabled` (--quiet, --json)."""

    def __init__(self, enabled: bool, stream: Any = None, every: float = 10.0) -> None:
        self.enabled = enabled
        self.stream = sys.stderr if stream is None else stream
        self.every = every
        self.bar: Any = None
        self.stage = ""
        self.started = math.nan  # at the first report
        self.printed = -math.inf

    def __call__(self, done: int, total: int, stage: str) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if math.isnan(self.started):
            self.started = now
        if self.stream.isatty():
            self._bar(done, total, stage)
        elif stage != "start" and (stage != self.stage or now - self.printed >= self.every):
            print(f"cnnvis: {self.line(done, total, stage)}", file=self.stream, flush=True)
            self.printed = now
        self.stage = stage

    def line(self, done: int, total: int, stage: str) -> str:
        """E.g. "sample:cat: faithfulness, 40/110 forward passes, 3 s, about 5 s left" (the
        time left once a tenth of the passes are done)."""
        elapsed = time.perf_counter() - self.started
        text = f"{stage}, {done:,}/{total:,} forward passes, {elapsed:.0f} s"
        if stage != "done" and done >= total / 10:
            left = seconds_left(done, total, elapsed)
            if not math.isnan(left):
                text += f", about {left:.0f} s left"
        return text

    def _bar(self, done: int, total: int, stage: str) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, desc="evaluating", unit="pass", file=self.stream, leave=False
            )
        if self.bar.total != total:
            self.bar.total = total
        self.bar.set_postfix_str(stage, refresh=False)
        self.bar.update(done - self.bar.n)
        if stage == "done":
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
