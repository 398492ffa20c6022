"""The `cnnvis` command: a thin argparse layer over the library; `main(argv) -> int`."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import textwrap
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from . import __version__
from .errors import CnnvisError

log = logging.getLogger("cnnvis")

EXAMPLES = {
    "cnnvis": """
        cnnvis explain                  # the bundled cat: figures, maps, report.html in ./cnnvis-out
        cnnvis explain photo.jpg --method all
        cnnvis sweep photo.jpg          # guided Grad-CAM at every layer, as one grid
        cnnvis classify photo.jpg
        cnnvis COMMAND --help           # each command's options and examples
    """,
    "explain": """
        cnnvis explain                                  # the bundled cat, default model
        cnnvis explain photo.jpg --method grad-cam,guided-backprop
        cnnvis explain a.jpg b.png --model torchvision:resnet50 --layer layer4 --method all
        cnnvis explain sample:coffee --target espresso --out results/
        cnnvis explain photo.jpg --target 281 --cmap inferno --json

        Writes OUT/<image>/ (figure.png, comparison.png, one PNG per map, maps.npz,
        manifest.json) and OUT/report.html, a page that opens offline.
    """,
    "sweep": """
        cnnvis sweep                                    # guided Grad-CAM at every layer, the cat
        cnnvis sweep photo.jpg --method grad-cam --layers 'blocks.*'
        cnnvis sweep photo.jpg --model torchvision:vgg16 --layers 'features.*'
        cnnvis sweep photo.jpg --method layer-cam --layers 'blocks.*' --fuse mean

        Writes OUT/<image>/sweep-METHOD.png (the grid), sweep-METHOD/LAYER.png,
        sweep-METHOD.npz, sweep-METHOD.json and OUT/report.html; with --fuse HOW also
        sweep-METHOD/fused-HOW.png (and the key fused-HOW in the .npz).
    """,
    "classify": """
        cnnvis classify                                 # the bundled cat
        cnnvis classify sample:cat sample:coffee --top-k 3
        cnnvis classify photo.jpg --model torchvision:resnet50 --json
    """,
    "layers": """
        cnnvis layers                                   # the default model's layers
        cnnvis layers --model torchvision:resnet50 --weights none --filter 'layer4*'
    """,
    "methods": """
        cnnvis methods
        cnnvis methods --json
    """,
    "models": """
        cnnvis models
        cnnvis models --filter 'torchvision:res*'
        cnnvis models --filter 'timm:*vit_tiny*'
    """,
}


def _examples(name: str) -> str:
    return "examples:" + textwrap.indent(textwrap.dedent(EXAMPLES[name]), "  ")


def _add_model_args(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 or mps (default: cpu)")
    p.add_argument(
        "--output", default=None, help="the dict key or attribute holding the logits, if not one"
    )


def _add_max_pixels(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        default=None,
        help="refuse larger images before decoding them (default: $CNNVIS_MAX_PIXELS, else "
        "100000000)",
    )


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a machine-readable summary instead")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, less output")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")


def _add_outputs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--target",
        default="top1",
        help="the class to explain: top1 (each image's best), an index or a class name",
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


def _method_names(layer: bool = False) -> list[str]:
    from .methods import list_methods

    return [m.name for m in list_methods() if m.needs_layer or not layer]


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnvis",
        description="See what an image classifier looks at.",
        epilog=_examples("cnnvis"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cnnvis {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=_examples(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    p = command("explain", "Explain images with one or several methods; write figures and maps.")
    p.add_argument("images", nargs="*", help="image files or sample:NAME (default: sample:cat)")
    _add_model_args(p)
    p.add_argument(
        "--method",
        default="gradient,guided-backprop,grad-cam,guided-grad-cam",
        help=f"comma-separated, or all: {', '.join(_method_names())} (default: %(default)s; "
        "`cnnvis methods` gives the cost of each)",
    )
    p.add_argument(
        "--layer",
        default="auto",
        help="layer for CAM methods (see `cnnvis layers`), several comma-separated, or auto "
        "(the last with spatial output)",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="METHOD.NAME=VALUE",
        help="a method's parameter, repeatable: --param integrated-gradients.steps=64",
    )
    _add_outputs(p)
    p.add_argument(
        "--top-k", type=positive_int, default=5, help="predictions to show per image (default: 5)"
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        help="images per recorded forward (default: 8); all methods share each forward",
    )
    _add_max_pixels(p)
    _add_common(p)

    p = command("sweep", "The tutorial's per-layer loop in one pass: a method at every layer.")
    p.add_argument("image", nargs="?", default="sample:cat", help="image file or sample:NAME")
    _add_model_args(p)
    p.add_argument(
        "--method",
        default="guided-grad-cam",
        help=f"a method that takes a layer: {', '.join(_method_names(layer=True))} "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--layers",
        default="all",
        help="all (every block along the main path), or a glob such as 'features.*'",
    )
    p.add_argument(
        "--fuse",
        choices=("mean", "max"),
        help="also fuse the layers' CAMs into one map (ReLU, min-max per layer, then the mean "
        "or the maximum; cnnvis.fuse_layers); for CAM methods",
    )
    _add_outputs(p)
    _add_max_pixels(p)
    _add_common(p)

    from .features_cli import add_parser as add_features

    add_features(sub)

    from .web_cli import add_parser as add_serve

    add_serve(sub)

    from .evaluate_cli import add_parser as add_evaluate

    add_evaluate(sub)

    from .batch_cli import add_parser as add_batch

    add_batch(sub)

    p = command("classify", "Top-k predictions with class names and probabilities.")
    p.add_argument("images", nargs="*", help="image files or sample:NAME (default: sample:cat)")
    _add_model_args(p)
    p.add_argument("--top-k", type=positive_int, default=5, help="classes per image (default: 5)")
    _add_max_pixels(p)
    _add_common(p)

    p = command("layers", "The model's layers with output shapes; the default layer marked.")
    _add_model_args(p)
    p.add_argument("--filter", default=None, help="glob over layer names, e.g. 'layer4*'")
    _add_common(p)

    p = command("methods", "Every registered method: what it is, its paper, needs and cost.")
    _add_common(p)

    p = command("models", "Model sources and names, and which have weights here.")
    p.add_argument("--filter", default=None, help="glob, e.g. 'torchvision:res*' or 'timm:*vit*'")
    _add_common(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    0 ok; 1 some images failed (the others were written) or an unexpected error; 2 bad
    arguments; 3 no image could be read; 4 model, 5 layer, 6 method, 7 target errors.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # --help, --version, or a usage error (already printed)
        return exit.code if isinstance(exit.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 2
    args.argv = argv
    debug = getattr(args, "debug", False)
    quiet = getattr(args, "quiet", False) or getattr(args, "json", False)
    from . import commands

    handler = getattr(commands, f"cmd_{args.command}")
    with _logging(logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)):
        try:
            return handler(args)
        except CnnvisError as error:
            if debug:
                traceback.print_exc()
            print(f"cnnvis: error: {_cli_hints(str(error), args)}", file=sys.stderr)
            return error.exit_code
        except KeyboardInterrupt:
            print("cnnvis: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `cnnvis layers | head`: the reader left, stop quietly
            _silence_stdout()
            return 141
        except Exception as error:  # the last line of defence: one line, no traceback by default
            if debug:
                traceback.print_exc()
            print(
                f"cnnvis: unexpected error: {type(error).__name__}: {error} (run with --debug "
                "for the traceback)",
                file=sys.stderr,
            )
            return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


class _Handler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record is emitted (tests swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


@contextmanager
def _logging(level: int) -> Iterator[None]:
    """Library log records at `level` and above as 'cnnvis: message' lines on stderr."""
    handler = _Handler()
    handler.setFormatter(logging.Formatter("cnnvis: %(message)s"))
    previous = log.level
    log.setLevel(level)
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(previous)


def _cli_hints(message: str, args: argparse.Namespace) -> str:
    """The library's advice ('see cnnvis.list_layers(model)') as the matching command."""
    model = getattr(args, "model", "default")
    flag = "" if model == "default" else f" --model {model}"
    if str(getattr(args, "weights", "")).lower() in ("none", "random"):
        flag += " --weights none"
    for old, new in (
        ("see cnnvis.list_layers(model)", f"see `cnnvis layers{flag}`"),
        ("cnnvis.list_layers(model)", f"`cnnvis layers{flag}`"),
        ("see cnnvis.list_methods()", "see `cnnvis methods`"),
        ("or raise max_pixels", "or raise --max-pixels"),
        ("pass output=KEY (--output KEY)", "pass --output KEY"),
        ("pass output= (--output)", "pass --output"),
    ):
        message = message.replace(old, new)
    return message


def entry_point() -> None:
    sys.exit(main())


def dump_json(data: object) -> None:
    print(json.dumps(data, indent=2, default=str))


def relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
