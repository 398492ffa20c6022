"""What each `cnnvis` subcommand does; the CLI parses, this runs the library and writes files."""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .api import explain_many, sweep
from .cli import dump_json, relative
from .errors import CnnvisError, ImageError
from .explanation import Explanation
from .methods import get_method, list_methods
from .model import LoadedModel

log = logging.getLogger("cnnvis")


def _load_model(args: argparse.Namespace) -> LoadedModel:
    from .zoo import load_model

    weights = None if str(args.weights).lower() in ("none", "random") else args.weights
    return load_model(args.model, weights=weights, device=args.device)


def _methods(spec: str) -> list[str]:
    if spec.strip().lower() == "all":
        return [m.name for m in list_methods()]
    names = [s.strip() for s in spec.split(",") if s.strip()]
    return [get_method(name).name for name in names]


def _target(spec: str | None) -> int | str | None:
    if spec is None or spec.lower() in ("top1", "top-1"):
        return None
    return int(spec) if spec.strip().lstrip("-").isdigit() else spec


def _stem(source: str) -> str:
    text = str(source)
    if text.startswith("sample:"):
        return text.split(":", 1)[1]
    return Path(text).stem or "image"


def _unique_dirs(root: Path, sources: Sequence[str]) -> list[Path]:
    seen: dict[str, int] = {}
    dirs = []
    for source in sources:
        stem = _stem(source)
        seen[stem] = seen.get(stem, 0) + 1
        dirs.append(root / (stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"))
    return dirs


def _progress(items: Sequence[Any], quiet: bool, desc: str) -> Iterator[Any]:
    if quiet or not sys.stderr.isatty() or len(items) < 2:
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, file=sys.stderr)


def _map_key(e: Explanation) -> str:
    return e.method if e.layer is None else f"{e.method}@{e.layer}"


def _versions() -> dict[str, str]:
    import torch
    import torchvision

    return {
        "cnnvis": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }


def _write_image_outputs(
    folder: Path,
    source: str,
    index: int,
    explanations: list[Explanation],
    model: LoadedModel,
    cmap: str,
    seconds: float,
) -> dict[str, Any]:
    from . import render

    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "figure": render.save_figure(
            render.explanation_figure(explanations, index, cmap), folder / "figure.png"
        )
    }
    arrays = {"image": explanations[0].images[index].numpy()}
    maps = []
    for e in explanations:
        key = _map_key(e)
        png = render.save_map_png(e, index, folder / f"{key.replace('@', '_at_')}.png", cmap)
        arrays[key] = e.map[index].detach().cpu().float().numpy()
        maps.append(
            {
                "method": e.method,
                "layer": e.layer,
                "png": png.name,
                "npz_key": key,
                "shape": list(e.map[index].shape),
                "params": e.params,
            }
        )
    np.savez_compressed(folder / "maps.npz", **arrays)
    first = explanations[0]
    manifest = {
        "source": source,
        "model": model.name,
        "weights": model.weights,
        "target": {
            "index": first.targets[index],
            "name": first.target_names[index],
            "probability": first.probabilities[index],
        },
        "predictions": [asdict(p) for p in (first.predictions or [[]])[index]],
        "maps": maps,
        "files": {"figure": files["figure"].name, "maps": "maps.npz"},
        "seed": None,
        "versions": _versions(),
        "seconds": seconds,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def _print_predictions(source: str, predictions: Sequence[Any], folder: Path | None) -> None:
    print(f"{source}:")
    for rank, p in enumerate(predictions, 1):
        print(f"  {rank}. {p.name:<32} {p.probability:7.2%}  (class {p.index})")
    if folder is not None:
        print(f"  -> {relative(folder)}/")


def _load_images(sources: Sequence[str]) -> tuple[list[tuple[str, Any]], list[dict[str, str]]]:
    from .images import load_image

    good, failed = [], []
    for source in sources:
        try:
            good.append((source, load_image(source)))
        except ImageError as error:
            print(f"cnnvis: error: {source}: {error}", file=sys.stderr)
            failed.append({"source": source, "error": str(error)})
    return good, failed


def cmd_explain(args: argparse.Namespace) -> int:
    sources = args.images or ["sample:cat"]
    model = _load_model(args)
    methods = _methods(args.method)
    layer = None if args.layer in (None, "auto") else args.layer
    loaded, failed = _load_images(sources)
    folders = dict(zip(sources, _unique_dirs(Path(args.out), sources), strict=True))
    batches = [loaded[i : i + args.batch_size] for i in range(0, len(loaded), args.batch_size)]
    summary = []
    for batch in _progress(batches, args.quiet, "explaining"):
        start = time.perf_counter()
        failures: dict[str, CnnvisError] = {}
        try:
            results = explain_many(
                model,
                [image for _, image in batch],
                methods,
                layer,
                _target(args.target),
                output=args.output,
                failures=failures,
                top_k=args.top_k,
            )
        except ImageError as error:
            failed += [{"source": s, "error": str(error)} for s, _ in batch]
            print(f"cnnvis: error: {error}", file=sys.stderr)
            continue
        for name, error in failures.items():
            print(f"cnnvis: warning: {name} skipped: {error}", file=sys.stderr)
        if not results:
            raise next(iter(failures.values()))
        seconds = (time.perf_counter() - start) / len(batch)
        explanations = list(results.values())
        for i, (source, _) in enumerate(batch):
            folder = folders[source]
            manifest = _write_image_outputs(
                folder, source, i, explanations, model, args.cmap, seconds
            )
            manifest["folder"] = str(folder)
            summary.append(manifest)
            if not args.json:
                preds = explanations[0].predictions[i] if explanations[0].predictions else []
                _print_predictions(source, preds, folder)
    if args.json:
        dump_json({"images": summary, "failed": failed})
    return 1 if failed else 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from . import render

    model = _load_model(args)
    loaded, failed = _load_images([args.image])
    if failed:
        return ImageError.exit_code
    source, image = loaded[0]
    start = time.perf_counter()
    result = sweep(model, image, args.method, args.layers, _target(args.target), output=args.output)
    seconds = time.perf_counter() - start
    folder = _unique_dirs(Path(args.out), [source])[0]
    folder.mkdir(parents=True, exist_ok=True)
    name = f"sweep-{result.method}"
    figure = render.save_figure(render.sweep_figure(result, 0, args.cmap), folder / f"{name}.png")
    np.savez_compressed(
        folder / f"{name}.npz",
        **{layer: e.map[0].cpu().float().numpy() for layer, e in result.explanations.items()},
    )
    first = next(iter(result.explanations.values()))
    info = {
        "source": source,
        "method": result.method,
        "layers": [{"name": n, "shape": list(result.shapes[n])} for n in result.layers],
        "target": {"index": first.targets[0], "name": first.target_names[0]},
        "figure": str(figure),
        "seconds": seconds,
    }
    if args.json:
        dump_json(info)
    else:
        print(
            f"{result.method} over {len(result)} layers of {model.name} "
            f"for {first.target_names[0]} ({first.targets[0]}) in {seconds:.2f}s"
        )
        print(f"  -> {relative(figure)}")
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    from .api import classify

    model = _load_model(args)
    loaded, failed = _load_images(args.images or ["sample:cat"])
    results = []
    if loaded:
        preds = classify(model, [image for _, image in loaded], args.top_k, output=args.output)
        for (source, _), p in zip(loaded, preds, strict=True):
            results.append({"source": source, "predictions": [asdict(x) for x in p]})
            if not args.json:
                _print_predictions(source, p, None)
    if args.json:
        dump_json({"images": results, "failed": failed})
    return 1 if failed else 0


def cmd_layers(args: argparse.Namespace) -> int:
    from .layers import list_layers

    model = _load_model(args)
    size = model.preprocess.crop_size
    infos = list_layers(model.module, (1, 3, size, size), args.filter)
    if args.json:
        dump_json([asdict(i) for i in infos])
        return 0
    print(f"{model.name}: {len(infos)} layers (input 3x{size}x{size}); * = default CAM layer")
    for info in infos:
        shape = "x".join(map(str, info.output_shape[1:])) if info.output_shape else "-"
        mark = "*" if info.default else " "
        calls = f"  (runs {info.calls}x)" if info.calls > 1 else ""
        print(f" {mark} {info.name:<40} {info.type:<24} {shape}{calls}")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    infos = list_methods()
    rows = [
        {
            "name": m.name,
            "kind": m.kind,
            "summary": m.summary,
            "formula": m.formula,
            "paper": m.paper,
            "needs": list(m.needs),
            "passes": m.passes,
        }
        for m in infos
    ]
    if args.json:
        dump_json(rows)
        return 0
    for r in rows:
        needs = ", ".join(r["needs"]) or "-"
        print(f"{r['name']:<18} {r['kind']:<6} {r['summary']}")
        print(f"{'':<25} {r['formula']}  |  cost: {r['passes']}  |  needs: {needs}")
        print(f"{'':<25} {r['paper']}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .zoo import available_models

    entries = available_models(args.filter)
    if args.json:
        dump_json(entries)
        return 0
    for e in entries:
        local = {True: "weights here", False: "downloads on first use", None: "?"}[e.get("local")]
        print(f"{e['name']:<40} {e['source']:<12} {local}")
    if args.filter is None:
        print("(timm models are listed with --filter, e.g. --filter 'timm:*resnet*')")
    return 0
