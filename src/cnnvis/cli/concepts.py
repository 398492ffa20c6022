"""`cnnvis concepts`: what the network has learned. `concepts dff`: Deep Feature Factorization
of a layer over images, written as a figure, the maps (npz) and the concepts (JSON)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..files import image_files
from . import out_folder
from .common import add_common, add_model_args, command_parser, load_model

EXAMPLES = """examples:
  cnnvis concepts dff                               # the bundled cat, 4 concepts
  cnnvis concepts dff photos/ --k 6 --layer blocks.5
  cnnvis concepts dff a.jpg b.jpg --model torchvision:resnet50 --out dff-out
"""
DEFAULT_OUT = "cnnvis-out/concepts"
ABOUT = "Concepts the network has learned: deep feature factorization (dff) of a layer."


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = command_parser(subparsers, "concepts", ABOUT, EXAMPLES)
    methods = p.add_subparsers(dest="concept_method", metavar="METHOD", required=True)
    dff = methods.add_parser(
        "dff",
        help="k concepts of a layer over the images by non-negative matrix factorization",
        description="Deep Feature Factorization (Collins et al., ECCV 2018): the layer's "
        "activations over all images split into k concepts, a map of each on each image, and "
        "the classes each concept votes for.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dff.add_argument(
        "images", nargs="*", default=["sample:cat"], metavar="IMAGES",
        help="image files, folders of them, or sample:NAME (default: sample:cat)",
    )  # fmt: skip
    add_model_args(dff)
    dff.add_argument("--layer", default=None, help="a layer by dotted name (default: the last "
                     "spatial layer; see `cnnvis layers`)")  # fmt: skip
    dff.add_argument("--k", type=int, default=4, help="how many concepts (4)")
    dff.add_argument("--seed", type=int, default=0, help="the NMF's random start (0)")
    dff.add_argument("--top", type=int, default=3, help="classes listed per concept (3)")
    dff.add_argument("--out", default=DEFAULT_OUT, help=f"output folder ({DEFAULT_OUT})")
    out_folder.add_force(dff)
    add_common(dff)
    return p


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..concepts import dff
    from ..render.figures import save_figure

    model = load_model(args)
    out = Path(args.out)
    out_folder.claim(out, "concepts", args.force)
    result = dff(model, _images(args.images), layer=args.layer, k=args.k, seed=args.seed)
    figure = save_figure(result.figure(), out / "concepts.png")
    np.savez_compressed(
        out / "maps.npz",
        maps=result.maps.cpu().numpy(),
        layer_maps=result.layer_maps.cpu().numpy(),
        basis=result.basis.cpu().numpy(),
    )
    summary = {
        "method": "dff",
        "model": model.name,
        "layer": result.layer,
        "k": result.k,
        "images": [str(i) for i in _images(args.images)],
        "nmf_error": round(result.error, 4),
        "nmf_iterations": result.iterations,
        "concepts": result.summary(),
        "files": {"figure": figure.name, "maps": "maps.npz"},
    }
    (out / "concepts.json").write_text(json.dumps(summary, indent=2))
    if args.json:
        print(json.dumps(summary, indent=2))
    elif not args.quiet:
        print(f"{result!r}")
        for j in range(result.k):
            print("  " + result.label(j, args.top))
        print(f"wrote {figure}, {out / 'maps.npz'}, {out / 'concepts.json'}")
    return 0


def _images(items: list[str]) -> list[Any]:
    """The images named: files and sample:NAME as given, folders as their image files."""
    images: list[Any] = []
    for item in items:
        path = Path(item)
        images.extend(sorted(image_files(path, recursive=False)) if path.is_dir() else [item])
    return images
