"""What the commands share: flags, model and image loading, method / parameter / layer parsing,
progress bars, the predictions table, hints in the command line's words, JSON and paths."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import method_rows
from ..errors import CnnvisError, Hint, ImageError, MethodError, ParamError, closest

if TYPE_CHECKING:  # torch-backed: imported where used, so `cnnvis --help` starts at once
    from ..explanation import Prediction
    from ..methods import MethodInfo
    from ..model import LoadedModel


class CommandError(CnnvisError):
    """A command cannot run as asked (a flag out of range, a missing extra, a busy port); it
    carries the exit code to end with (2, argparse's, for flags)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ----------------------------------------------------------------------------- parsers, flags


def command_parser(subparsers: Any, name: str, about: str, epilog: str) -> argparse.ArgumentParser:
    """A command's sub-parser: `about` as its help and description, `epilog` kept as written."""
    return subparsers.add_parser(
        name,
        help=about,
        description=about,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def examples(text: str) -> str:
    """An indented example block under 'examples:' for a command's epilog."""
    return "examples:" + textwrap.indent(textwrap.dedent(text), "  ")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="default",
        help="default (offline EfficientNet-Lite0), torchvision:NAME, timm:NAME or a file",
    )
    p.add_argument(
        "--weights",
        default="DEFAULT",
        help="DEFAULT (pretrained), a weights name, 'none' (random init) or a state-dict file",
    )
    p.add_argument(
        "--trust-model-file",
        action="store_true",
        help="unpickle a --model file in full if it is not weights-only: it can run any code, "
        "so only for files you trust",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 or mps (default: cpu)")
    p.add_argument(
        "--output", default=None, help="the dict key or attribute holding the logits, if not one"
    )


def add_max_pixels(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        default=None,
        help="refuse larger images before decoding them (default: $CNNVIS_MAX_PIXELS, else "
        "100000000)",
    )


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a machine-readable summary instead")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, less output")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")


def add_outputs(p: argparse.ArgumentParser) -> None:
    """--target, --out, --cmap and --seed of the commands that write an output folder."""
    p.add_argument(
        "--target",
        default="top1",
        help="what to explain: top1 (each image's best class), a class index or name, "
        "285@softmax / 285@log_softmax (the score; default the logit), a unit layer4:17, "
        "mask:CLASS (segmentation), labels:3,7 (multi-label), similar:IMAGE, regression:0",
    )
    p.add_argument(
        "--out",
        default="cnnvis-out",
        help="output folder: one sub-folder per image, report.html at the top (default: %(default)s)",
    )
    p.add_argument(
        "--cmap",
        default="jet",
        help="any matplotlib colormap for CAMs (default: %(default)s); signed maps use RdBu_r",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed for random-init weights and noisy methods, kept in the manifest",
    )


def add_params(p: argparse.ArgumentParser, example: str) -> None:
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="METHOD.NAME=VALUE",
        help=f"a method's parameter, repeatable: --param {example}",
    )


def method_names(layer: bool = False) -> list[str]:
    """The built-in method names for help texts (read without importing torch)."""
    return method_rows.names(layer)


# ----------------------------------------------------------------------------- arguments


def load_model(args: argparse.Namespace) -> LoadedModel:
    from ..zoo import load_model

    return load_model(
        args.model, weights=weights(args), device=args.device, trust_pickle=args.trust_model_file
    )


def weights(args: argparse.Namespace) -> str | None:
    """--weights, with 'none' / 'random' as None (random init)."""
    return None if str(args.weights).lower() in ("none", "random") else args.weights


def parse_methods(spec: str) -> list[str]:
    """Method names from 'a,b' or 'all'; an unknown name lists the close or all valid ones."""
    from ..methods import list_methods

    if spec.strip().lower() == "all":
        return [m.name for m in list_methods()]
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise MethodError("no method given; pass --method NAME[,NAME...] or --method all")
    return [parse_method(name).name for name in names]


def parse_method(name: str) -> MethodInfo:
    from ..methods import get_method, list_methods

    valid = [m.name for m in list_methods()]
    if name in valid:
        return get_method(name)
    near = closest(name, valid)
    hint = f"did you mean: {', '.join(near)}?" if near else f"the methods are: {', '.join(valid)}"
    raise MethodError(f"unknown method {name!r}; {hint} (see `cnnvis methods`)")


def parse_params(specs: Sequence[str], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """{method: {name: value}} from 'METHOD.NAME=VALUE' strings (values as JSON if they parse);
    a name the method does not take is a ParamError naming the ones it does."""
    from ..methods import check_params, get_method

    params: dict[str, dict[str, Any]] = {}
    for spec in specs:
        key, sep, text = spec.partition("=")
        method, dot, name = key.strip().partition(".")
        if not (sep and dot and method and name):
            raise ParamError(
                f"--param {spec!r} is not METHOD.NAME=VALUE, e.g. integrated-gradients.steps=64"
            )
        method = parse_method(method).name
        if method not in methods:
            raise ParamError(f"--param {spec!r} is for {method}, which is not in --method")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        params.setdefault(method, {})[name.strip()] = value
    for method, values in params.items():
        check_params(get_method(method), values)
    return params


def check_cmap(name: str) -> None:
    from ..render import colormap

    colormap(name)


def set_seed(value: int) -> None:
    import numpy as np
    import torch

    torch.manual_seed(value)
    np.random.seed(value % 2**32)


# ----------------------------------------------------------------------------- images, exit


def load_images(
    sources: Sequence[str], max_pixels: int | None = None
) -> tuple[list[tuple[str, Any]], list[dict[str, str]]]:
    """Load every image (a folder: the images in its tree); a failure is reported on stderr
    and kept, the others go on."""
    from ..images import load_image

    good: list[tuple[str, Any]] = []
    failed: list[dict[str, str]] = []
    for source in expand_folders(sources, failed):
        try:
            good.append((source, load_image(source, max_pixels=max_pixels)))
        except ImageError as error:
            message = say(error)  # e.g. --max-pixels
            print(f"cnnvis: error: {source}: {message}", file=sys.stderr)
            failed.append({"source": source, "error": message})
    return good, failed


def expand_folders(sources: Sequence[str], failed: list[dict[str, str]]) -> list[str]:
    """`sources` with each folder replaced by the image files in its tree (sorted; symlink
    loops walked once); a folder without images is reported and added to `failed`."""
    from ..files import image_files

    expanded = []
    for source in sources:
        if not Path(source).is_dir():
            expanded.append(source)
            continue
        found = image_files(source)
        if not found:
            message = f"the folder {source} holds no image files (.jpg, .png, ...)"
            print(f"cnnvis: error: {message}", file=sys.stderr)
            failed.append({"source": source, "error": message})
        expanded += [str(path) for path in found]
    return expanded


def exit_code(loaded: int, failed: int) -> int:
    """0 all good; 1 some images failed; ImageError's code when none could be read."""
    if failed and not loaded:
        return ImageError.exit_code
    return 1 if failed else 0


def hint_words(args: argparse.Namespace) -> dict[str, Callable[[Hint], str]]:
    """How the command line says each `Hint` of an error: as the command or flag to use."""
    model = getattr(args, "model", "default")
    flag = "" if model in (None, "default") else f" --model {model}"
    if str(getattr(args, "weights", "")).lower() in ("none", "random"):
        flag += " --weights none"

    def methods(hint: Hint) -> str:
        if hint.detail == "torchscript":
            from ..methods import scripted_methods

            return f"methods that work: {', '.join(scripted_methods())}"
        return "see `cnnvis methods`"

    def output(hint: Hint) -> str:
        return (
            f"pass --output KEY to choose one of {hint.detail}"
            if hint.detail
            else "pass --output KEY"
        )

    return {
        "layers": lambda hint: f"see `cnnvis layers{flag}`",
        "methods": methods,
        "models": lambda hint: "see `cnnvis models`",
        "samples": lambda hint: f"samples: {', '.join(sorted(sample_names()))}",
        "max-pixels": lambda hint: "or raise --max-pixels",
        "output": output,
    }


def sample_names() -> list[str]:
    from ..images import list_samples

    return [f"sample:{name}" for name in list_samples()]


def say(error: CnnvisError, args: argparse.Namespace | None = None) -> str:
    """The error's message with its hint in the command line's words."""
    return error.render(hint_words(args or argparse.Namespace()))


# ----------------------------------------------------------------------------- printing


class Progress:
    """Progress of one stage on stderr, unless --quiet / --json or a single step: a tqdm bar
    when stdout and stderr are terminals; elsewhere (a log file, a pipe) lines, from the stage
    running `LINE_AFTER` seconds on: how far it is, again every `LINE_EVERY` seconds, and how
    long it took."""

    LINE_AFTER = 2.0
    LINE_EVERY = 10.0

    def __init__(
        self,
        args: argparse.Namespace,
        total: int,
        desc: str,
        unit: str = "image",
        delay: float = 0.0,
    ) -> None:
        self.bar = None
        self.total, self.desc, self.unit, self.done = total, desc, unit, 0
        self.start = time.perf_counter()
        self.said: float | None = None  # when the last line was written (lines only)
        wanted = not (getattr(args, "quiet", False) or getattr(args, "json", False)) and total > 1
        self.lines = wanted and not (sys.stdout.isatty() and sys.stderr.isatty())
        if wanted and not self.lines:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, desc=desc, file=sys.stderr, leave=False, unit=unit, delay=delay
            )

    def step(self, n: int = 1, note: str | None = None) -> None:
        self.done += n
        if self.bar is not None:
            if note:
                self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(n)
            return
        now = time.perf_counter()
        if not self.lines or now - self.start < self.LINE_AFTER:
            return
        if self.said is None or now - self.said >= self.LINE_EVERY:
            share = f" ({self.done / self.total:.0%})" if self.total else ""
            units = f"{self.unit}s" if self.total != 1 else self.unit
            print(
                f"cnnvis: {self.desc}: {self.done}/{self.total} {units}{share}, "
                f"{now - self.start:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            self.said = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.said is not None:  # it ran long enough to be shown: say it ended
            seconds = time.perf_counter() - self.start
            print(f"cnnvis: {self.desc}: done in {seconds:.1f} s", file=sys.stderr, flush=True)
            self.said = None


STAGE_UNITS = {"maps": "map", "features": "step"}  # what a stage counts (default: input rows)


class StageProgress:
    """The library's progress reports (`cnnvis.progress`) shown with one `Progress` per stage
    ("maps", "score-cam @ bn2", "features", ...): install it with
    `cnnvis.progress.reporting(StageProgress(args))` around the call."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stages: dict[str, Progress] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        shown = self.stages.get(stage)
        if shown is None or done < shown.done or total != shown.total:  # a new round of it
            if shown is not None:
                shown.close()
            unit = STAGE_UNITS.get(stage, "row")
            shown = self.stages[stage] = Progress(self.args, total, stage, unit, delay=2.0)
        if done > shown.done:
            shown.step(done - shown.done)
        if done >= total:
            self.stages.pop(stage).close()

    def close(self) -> None:
        for shown in self.stages.values():
            shown.close()
        self.stages.clear()


def print_predictions(
    source: str, predictions: Sequence[Prediction], target: int | None = None
) -> None:
    """A short table: rank, class name, index, probability; the explained class marked '>'."""
    width = max([len(p.name) for p in predictions] + [5])
    print(source)
    print(f"     #  {'class':<{width}}  index       p")
    for rank, p in enumerate(predictions, 1):
        mark = ">" if p.index == target else " "
        print(f"   {mark}{rank:>2}  {p.name:<{width}}  {p.index:>5}  {p.probability:6.1%}")


def explained(target: dict[str, Any]) -> str:
    """What was explained, in words: 'explained class 281 tabby (p=0.53)', or 'explained unit
    blocks.5:3' for a unit target (its index is -1 and it has no probability)."""
    index, name, p = target["index"], target["name"], target["probability"]
    if index is None or index < 0:
        return f"explained {'detection' if name.startswith('box:') else 'unit'} {name}"
    shown = f"{p:.2f}" if p >= 0.005 else f"{p:.1e}"
    return f"explained class {index} {name} (p={shown})"


def dump_json(data: object) -> None:
    print(json.dumps(data, indent=2, default=str))


def relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
