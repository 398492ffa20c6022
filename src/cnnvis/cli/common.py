"""What the commands share: flags, model and image loading, method / parameter / layer parsing,
progress bars, the predictions table, hints in the command line's words, JSON and paths."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CnnvisError, Hint, ImageError, MethodError, closest
from ..explanation import Prediction
from ..methods import MethodInfo, get_method, list_methods, scripted_methods
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
    return [m.name for m in list_methods() if m.needs_layer or not layer]


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
    if spec.strip().lower() == "all":
        return [m.name for m in list_methods()]
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise MethodError("no method given; pass --method NAME[,NAME...] or --method all")
    return [parse_method(name).name for name in names]


def parse_method(name: str) -> MethodInfo:
    valid = [m.name for m in list_methods()]
    if name in valid:
        return get_method(name)
    near = closest(name, valid)
    hint = f"did you mean: {', '.join(near)}?" if near else f"the methods are: {', '.join(valid)}"
    raise MethodError(f"unknown method {name!r}; {hint} (see `cnnvis methods`)")


def parse_params(specs: Sequence[str], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """{method: {name: value}} from 'METHOD.NAME=VALUE' strings (values as JSON if they parse)."""
    params: dict[str, dict[str, Any]] = {}
    for spec in specs:
        key, sep, text = spec.partition("=")
        method, dot, name = key.strip().partition(".")
        if not (sep and dot and method and name):
            raise MethodError(
                f"--param {spec!r} is not METHOD.NAME=VALUE, e.g. integrated-gradients.steps=64"
            )
        method = parse_method(method).name
        if method not in methods:
            raise MethodError(f"--param {spec!r} is for {method}, which is not in --method")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        params.setdefault(method, {})[name.strip()] = value
    return params


def check_cmap(name: str) -> None:
    from ..render import colormap

    colormap(name)


def set_seed(value: int) -> None:
    import torch

    torch.manual_seed(value)
    np.random.seed(value % 2**32)


# ----------------------------------------------------------------------------- images, exit


def load_images(
    sources: Sequence[str], max_pixels: int | None = None
) -> tuple[list[tuple[str, Any]], list[dict[str, str]]]:
    """Load every image; a failure is reported on stderr and kept, the others go on."""
    from ..images import load_image

    good, failed = [], []
    for source in sources:
        try:
            good.append((source, load_image(source, max_pixels=max_pixels)))
        except ImageError as error:
            message = say(error)  # e.g. --max-pixels
            print(f"cnnvis: error: {source}: {message}", file=sys.stderr)
            failed.append({"source": source, "error": message})
    return good, failed


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
    """A tqdm bar on stderr when stdout and stderr are terminals and not --quiet / --json."""

    def __init__(
        self, args: argparse.Namespace, total: int, desc: str, unit: str = "image"
    ) -> None:
        self.bar = None
        wanted = not (args.quiet or args.json) and total > 1
        if wanted and sys.stdout.isatty() and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=False, unit=unit)

    def step(self, n: int = 1, note: str | None = None) -> None:
        if self.bar is not None:
            if note:
                self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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


def dump_json(data: object) -> None:
    print(json.dumps(data, indent=2, default=str))


def relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
