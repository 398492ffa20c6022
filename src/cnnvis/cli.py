"""The `cnnvis` command: a thin argparse layer over the library; `main(argv) -> int`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap
import traceback
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import CnnvisError

log = logging.getLogger("cnnvis")

EXAMPLES = {
    "explain": """
        cnnvis explain                                  # the bundled cat, default model
        cnnvis explain photo.jpg --method grad-cam,guided-backprop
        cnnvis explain a.jpg b.png --model torchvision:resnet50 --layer layer4 --method all
        cnnvis explain sample:coffee --target espresso --out results/
    """,
    "sweep": """
        cnnvis sweep sample:cat                         # guided Grad-CAM at every layer
        cnnvis sweep photo.jpg --method grad-cam --layers 'blocks.*'
    """,
    "classify": """
        cnnvis classify sample:cat sample:coffee --top-k 3
    """,
    "layers": """
        cnnvis layers --model torchvision:resnet50 --filter 'layer4*'
    """,
    "methods": """
        cnnvis methods
    """,
    "models": """
        cnnvis models
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
    p.add_argument("--output", default=None, help="dict key / attribute holding the logits")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, less output")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnvis",
        description="See what an image classifier looks at.",
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
        help="comma-separated method names, or 'all' (see `cnnvis methods`)",
    )
    p.add_argument("--layer", default="auto", help="layer for CAM methods, or auto")
    p.add_argument("--target", default="top1", help="top1, a class index or a class name")
    p.add_argument("--top-k", type=int, default=5, help="predictions to print per image")
    p.add_argument("--out", default="cnnvis-out", help="output folder (one sub-folder per image)")
    p.add_argument("--batch-size", type=int, default=8, help="images per recorded forward")
    p.add_argument("--cmap", default="jet", help="any matplotlib colormap name")
    _add_common(p)

    p = command("sweep", "The map of a layer method at every layer, as one grid.")
    p.add_argument("image", nargs="?", default="sample:cat", help="image file or sample:NAME")
    _add_model_args(p)
    p.add_argument("--method", default="guided-grad-cam", help="a method that needs a layer")
    p.add_argument("--layers", default="all", help="all, or a glob such as 'features.*'")
    p.add_argument("--target", default="top1", help="top1, a class index or a class name")
    p.add_argument("--out", default="cnnvis-out", help="output folder")
    p.add_argument("--cmap", default="jet", help="any matplotlib colormap name")
    _add_common(p)

    p = command("classify", "Top-k predictions with class names and probabilities.")
    p.add_argument("images", nargs="*", help="image files or sample:NAME (default: sample:cat)")
    _add_model_args(p)
    p.add_argument("--top-k", type=int, default=5)
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
    """Run the command line; returns the exit code (0 ok, 1 partly failed, >1 error kinds)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    debug = getattr(args, "debug", False)
    quiet = getattr(args, "quiet", False) or getattr(args, "json", False)
    logging.basicConfig(
        level=logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO),
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    from . import commands

    handler = getattr(commands, f"cmd_{args.command}")
    try:
        return handler(args)
    except CnnvisError as error:
        if debug:
            traceback.print_exc()
        print(f"cnnvis: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("cnnvis: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the last line of defence: one line, no traceback by default
        if debug:
            traceback.print_exc()
        print(
            f"cnnvis: unexpected error: {type(error).__name__}: {error} (run with --debug)",
            file=sys.stderr,
        )
        return 1


def entry_point() -> None:
    sys.exit(main())


def dump_json(data: object) -> None:
    print(json.dumps(data, indent=2, default=str))


def relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
