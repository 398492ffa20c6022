"""What each `cnnvis` subcommand does; the CLI parses, this runs the library and writes files.

`explain` and `sweep` write into `--out` (default `./cnnvis-out`): one folder per image with its
figures, one PNG per map, the raw maps (`maps.npz`) and `manifest.json`, and `report.html` at
the top. Errors about one image are reported and the others go on (exit code 1); errors about
the whole run (model, method, layer, target) stop it with their own exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .api import explain_many, sweep
from .cli import _cli_hints, dump_json, relative
from .errors import CnnvisError, ImageError, MethodError, closest
from .explanation import Explanation, Prediction, Sweep
from .methods import MethodInfo, get_method, list_methods
from .model import LoadedModel
from .targets import UnitTarget, parse_target

log = logging.getLogger("cnnvis")


# ----------------------------------------------------------------------------- arguments


def _load_model(args: argparse.Namespace) -> LoadedModel:
    from .zoo import load_model

    weights = None if str(args.weights).lower() in ("none", "random") else args.weights
    return load_model(args.model, weights=weights, device=args.device)


def _methods(spec: str) -> list[str]:
    """Method names from 'a,b' or 'all'; an unknown name lists the close or all valid ones."""
    if spec.strip().lower() == "all":
        return [m.name for m in list_methods()]
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise MethodError("no method given; pass --method NAME[,NAME...] or --method all")
    return [_method(name).name for name in names]


def _method(name: str) -> MethodInfo:
    valid = [m.name for m in list_methods()]
    if name in valid:
        return get_method(name)
    near = closest(name, valid)
    hint = f"did you mean: {', '.join(near)}?" if near else f"the methods are: {', '.join(valid)}"
    raise MethodError(f"unknown method {name!r}; {hint} (see `cnnvis methods`)")


def _params(specs: Sequence[str], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """{method: {name: value}} from 'METHOD.NAME=VALUE' strings (values as JSON if they parse)."""
    params: dict[str, dict[str, Any]] = {}
    for spec in specs:
        key, sep, text = spec.partition("=")
        method, dot, name = key.strip().partition(".")
        if not (sep and dot and method and name):
            raise MethodError(
                f"--param {spec!r} is not METHOD.NAME=VALUE, e.g. integrated-gradients.steps=64"
            )
        method = _method(method).name
        if method not in methods:
            raise MethodError(f"--param {spec!r} is for {method}, which is not in --method")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        params.setdefault(method, {})[name.strip()] = value
    return params


def _layers(spec: str | None) -> list[str] | None:
    """None for 'auto', else the comma-separated layer names."""
    if spec is None or spec.strip().lower() == "auto":
        return None
    return [s.strip() for s in spec.split(",") if s.strip()] or None


def _resolve_layers(
    args: argparse.Namespace, model: LoadedModel, methods: Sequence[str]
) -> list[str] | None:
    """--layer as names; 'auto' resolved once here (and logged once), not once per batch."""
    names = _layers(args.layer)
    if names is not None or not any(get_method(m).needs_layer for m in methods):
        return names
    from .layers import default_layer

    size = model.preprocess.crop_size
    name = default_layer(model.module, (1, 3, size, size))
    log.info("using the default layer %s (the last with spatial output)", name)
    return [name]


def _target(spec: str | None) -> int | str | UnitTarget | None:
    """top1 -> None, "285" -> 285, "tabby" -> "tabby", "layer4:17@max" -> a unit target."""
    return parse_target(spec)


def _check_cmap(name: str) -> None:
    from .render import colormap

    colormap(name)


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def _stem(source: str) -> str:
    text = str(source)
    if text.lower().startswith("sample:"):
        return text.split(":", 1)[1] or "sample"
    name = Path(text).stem or "image"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _unique_dirs(root: Path, sources: Sequence[str]) -> list[Path]:
    """One folder per image under `root`, named after its stem; repeats get -2, -3, ..."""
    seen: dict[str, int] = {}
    dirs = []
    for source in sources:
        stem = _stem(source)
        seen[stem] = seen.get(stem, 0) + 1
        dirs.append(root / (stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"))
    return dirs


def _map_key(e: Explanation) -> str:
    """The map's name in maps.npz, the manifest and its PNG: 'gradient', 'grad-cam@layer4'."""
    return e.method if e.layer is None else f"{e.method}@{e.layer}"


# ----------------------------------------------------------------------------- progress


class _Progress:
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


# ----------------------------------------------------------------------------- run facts


def _versions() -> dict[str, str]:
    import matplotlib
    import PIL
    import torch
    import torchvision

    versions = {
        "cnnvis": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "matplotlib": matplotlib.__version__,
    }
    try:
        import timm

        versions["timm"] = timm.__version__
    except ImportError:  # pragma: no cover - timm is a dependency
        pass
    return versions


def _run_facts(
    args: argparse.Namespace, model: LoadedModel, command: str, argv: Sequence[str]
) -> dict[str, Any]:
    return {
        "command": command,
        "argv": list(argv),
        "started": datetime.now().isoformat(timespec="seconds"),
        "model": model.name,
        "weights": model.weights,
        "device": str(model.device),
        "input_size": model.preprocess.crop_size,
        "target": args.target,
        "seed": args.seed,
        "versions": _versions(),
    }


def _load_images(
    sources: Sequence[str], max_pixels: int | None = None
) -> tuple[list[tuple[str, Any]], list[dict[str, str]]]:
    """Load every image; a failure is reported on stderr and kept, the others go on."""
    from .images import load_image

    good, failed = [], []
    for source in sources:
        try:
            good.append((source, load_image(source, max_pixels=max_pixels)))
        except ImageError as error:
            message = _cli_hints(str(error), argparse.Namespace())  # e.g. --max-pixels
            print(f"cnnvis: error: {source}: {message}", file=sys.stderr)
            failed.append({"source": source, "error": message})
    return good, failed


def _exit_code(loaded: int, failed: int) -> int:
    """0 all good; 1 some images failed; ImageError's code when none could be read."""
    if failed and not loaded:
        return ImageError.exit_code
    return 1 if failed else 0


# ----------------------------------------------------------------------------- explain


def cmd_explain(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    methods = _methods(args.method)
    params = _params(args.param, methods)
    _check_cmap(args.cmap)
    _seed(args.seed)
    sources = args.images or ["sample:cat"]
    t = time.perf_counter()
    model = _load_model(args)
    model_seconds = time.perf_counter() - t
    t = time.perf_counter()
    loaded, failed = _load_images(sources, args.max_pixels)
    image_seconds = (time.perf_counter() - t) / max(1, len(sources))
    out = Path(args.out)
    run = _run_facts(args, model, "explain", args.argv)
    run["methods"] = methods
    entries: list[dict[str, Any]] = []
    if loaded:
        folders = _unique_dirs(out, [s for s, _ in loaded])
        items = list(zip(loaded, folders, strict=True))
        layers = _resolve_layers(args, model, methods)
        progress = _Progress(args, len(items), "explaining")
        skipped: dict[str, CnnvisError] = {}
        try:
            for b in range(0, len(items), args.batch_size):
                batch = items[b : b + args.batch_size]
                entries += _explain_batch(
                    args, model, methods, layers, params, batch, skipped, progress
                )
        finally:
            progress.close()
        for name, error in skipped.items():
            print(f"cnnvis: warning: {name} skipped: {error}", file=sys.stderr)
        run["methods"] = [m for m in methods if m not in skipped]
        run["layer"] = ", ".join(sorted({m["layer"] for e in entries for m in e["maps"]} - {None}))
        for entry in entries:
            entry["timings"]["load_model"] = model_seconds
            entry["timings"]["load_image"] = image_seconds
            _write_manifest(out, entry, run)
    run["timings"] = {"load_model": model_seconds, "total": time.perf_counter() - start}
    report = _report(out, run, entries, failed) if entries else None
    _finish(args, out, run, entries, failed, report)
    return _exit_code(len(entries), len(failed))


def _explain_batch(
    args: argparse.Namespace,
    model: LoadedModel,
    methods: list[str],
    layers: list[str] | None,
    params: dict[str, dict[str, Any]],
    batch: list[tuple[tuple[str, Any], Path]],
    skipped: dict[str, CnnvisError],
    progress: _Progress,
) -> list[dict[str, Any]]:
    """One recorded forward for the batch, then each image's files."""
    t = time.perf_counter()
    failures: dict[str, CnnvisError] = {}
    results = explain_many(
        model,
        [image for (_, image), _ in batch],
        methods,
        layers,
        _target(args.target),
        output=args.output,
        failures=failures,
        top_k=args.top_k,
        params=params,
    )
    skipped.update(failures)
    if not results:
        raise next(iter(failures.values()))
    batch_seconds = time.perf_counter() - t
    explanations = list(results.values())
    entries = []
    for i, ((source, image), folder) in enumerate(batch):
        t = time.perf_counter()
        entry = _write_image_outputs(folder, source, image, i, explanations, args)
        entry["timings"] = {
            "explain_batch": batch_seconds,
            "batch_size": len(batch),
            "explain": batch_seconds / len(batch),
            "render": time.perf_counter() - t,
        }
        entries.append(entry)
        progress.step(note=source)
    return entries


def _write_image_outputs(
    folder: Path,
    source: str,
    image: Any,
    index: int,
    explanations: list[Explanation],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Figures, one PNG per map, maps.npz for image `index` of the batch; its manifest entry."""
    from . import render

    folder.mkdir(parents=True, exist_ok=True)
    first = explanations[0]
    files: dict[str, str] = {"input": "input.png"}
    render.to_pil(first.images[index]).save(folder / "input.png")
    fig = render.explanation_figure(explanations, index, args.cmap)
    files["figure"] = render.save_figure(fig, folder / "figure.png").name
    if len(explanations) > 1:
        fig = render.comparison_figure(explanations, index, args.cmap)
        files["comparison"] = render.save_figure(fig, folder / "comparison.png").name
    arrays = {}
    maps = []
    for e in explanations:
        key = _map_key(e)
        arrays[key] = e.map[index].detach().cpu().numpy()
        maps.append(_write_map_pngs(folder, key, e, index, args.cmap))
    arrays["image"] = first.images[index].detach().cpu().numpy()
    np.savez_compressed(folder / "maps.npz", **arrays)
    files["maps"] = "maps.npz"
    files["manifest"] = "manifest.json"
    return {
        "source": source,
        "folder": str(folder),
        "image_size": list(image.size),
        "target": {
            "index": first.targets[index],
            "name": first.target_names[index],
            "probability": first.probabilities[index],
        },
        "predictions": [asdict(p) for p in (first.predictions or [[]] * (index + 1))[index]],
        "maps": maps,
        "files": files,
    }


def _write_map_pngs(
    folder: Path, key: str, e: Explanation, index: int, cmap: str
) -> dict[str, Any]:
    """Two PNGs per map at the input's resolution: its main display (a CAM over the image in
    `cmap`; a pixel map as the tutorial's grayscale) and the raw signed map in a diverging
    colormap centred on zero (a pixel map's R, G, B combined by luma first)."""
    from . import render
    from .postprocess import grayscale

    entry: dict[str, Any] = {
        "method": e.method,
        "kind": e.kind,
        "layer": e.layer,
        "npz_key": key,
        "shape": list(e.map[index].shape),
        "dtype": str(e.map.dtype).removeprefix("torch."),
        "params": e.params,
    }
    if e.kind == "cam":
        png = render.save_map_png(e, index, folder / f"{key}.png", cmap, mode="overlay")
        signed = e.map[index]
        entry["display"] = f"ReLU, over the image ({cmap})"
    else:
        png = render.save_map_png(e, index, folder / f"{key}.png", mode="gray")
        signed = _clip_tails(grayscale(e.map[index : index + 1].float())[0])
        entry["display"] = "grayscale |R|+|G|+|B|, to the 99th percentile"
    entry["png"] = png.name
    signed_path = folder / f"{key}.signed.png"
    render.heatmap(signed, signed=True).save(signed_path)
    entry["signed_display"] = (
        "raw map, diverging colormap centred on zero"
        if e.kind == "cam"
        else "luma of R, G, B, diverging colormap centred on zero, clipped at the 99.5th "
        "percentile of |map|"
    )
    entry["signed_png"] = signed_path.name
    return entry


def _clip_tails(signed: Any, percentile: float = 99.5) -> Any:
    """A signed map clipped to +-(the percentile of |map|), so that a few extreme pixels do not
    wash the rest of a gradient out to the colormap's centre; zero stays at zero."""
    import torch

    bound = torch.quantile(signed.abs().flatten().float(), percentile / 100.0)
    return signed.clamp(-bound, bound) if bound > 0 else signed


def _write_manifest(out: Path, entry: dict[str, Any], run: dict[str, Any]) -> None:
    """manifest.json in the image's folder: the run's facts and this image's results."""
    folder = Path(entry["folder"])
    manifest = {
        "cnnvis": __version__,
        "command": run["command"],
        "source": entry["source"],
        "image_size": entry.get("image_size"),
        "model": run["model"],
        "weights": run["weights"],
        "device": run["device"],
        "input_size": run["input_size"],
        "layer": _layer_of(entry),
        "target": {"requested": run["target"], **entry["target"]},
        "predictions": entry["predictions"],
        "methods": [{k: v for k, v in m.items() if k not in ("display",)} for m in entry["maps"]],
        "files": entry["files"],
        "seed": run["seed"],
        "versions": run["versions"],
        "timings": {
            k: round(v, 4) if isinstance(v, float) else v for k, v in entry["timings"].items()
        },
        "argv": run["argv"],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    entry["folder"] = _relative_to(folder, out)


def _layer_of(entry: dict[str, Any]) -> str | None:
    layers = [m["layer"] for m in entry["maps"] if m.get("layer")]
    return layers[0] if len(set(layers)) == 1 else (", ".join(dict.fromkeys(layers)) or None)


def _relative_to(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _report(
    out: Path, run: dict[str, Any], entries: list[dict[str, Any]], failed: list[dict[str, str]]
) -> Path:
    from .report import write_report

    return write_report(out, run, entries, failed)


def _finish(
    args: argparse.Namespace,
    out: Path,
    run: dict[str, Any],
    entries: list[dict[str, Any]],
    failed: list[dict[str, str]],
    report: Path | None,
) -> None:
    """The terminal summary (a predictions table per image, where files went) or --json."""
    if args.json:
        dump_json(
            {
                "command": run["command"],
                "model": run["model"],
                "weights": run["weights"],
                "methods": run.get("methods", []),
                "out": str(out),
                "report": None if report is None else str(report),
                "images": [
                    {
                        "source": e["source"],
                        "folder": str(out / e["folder"]),
                        "target": e["target"],
                        "predictions": e["predictions"],
                        "files": {k: str(out / e["folder"] / v) for k, v in e["files"].items()},
                        "maps": [m["npz_key"] for m in e["maps"]],
                    }
                    for e in entries
                ],
                "failed": failed,
                "seconds": round(run["timings"]["total"], 3),
            }
        )
        return
    for e in entries:
        folder = out / e["folder"]
        if args.quiet:
            t = e["target"]
            print(
                f"{e['source']}: {t['name']} ({t['index']}) {t['probability']:.1%} -> {relative(folder)}/"
            )
            continue
        _print_predictions(
            e["source"], [Prediction(**p) for p in e["predictions"]], e["target"]["index"]
        )
        print(f"  files: {relative(folder)}/  ({_describe_files(e)})")
    if report is not None:
        print(f"report: {relative(report)}")
    if failed and not args.quiet:
        print(f"{len(failed)} of {len(failed) + len(entries)} images failed (see the errors above)")


def _describe_files(entry: dict[str, Any]) -> str:
    files = entry["files"]
    figures = [files[k] for k in ("figure", "comparison", "sweep") if files.get(k)]
    n = len(entry["maps"])
    maps = f"{n} map{'s' if n != 1 else ''} as PNG"
    return ", ".join([*figures, maps, "maps.npz", "manifest.json"])


def _print_predictions(
    source: str, predictions: Sequence[Prediction], target: int | None = None
) -> None:
    """A short table: rank, class name, index, probability; the explained class marked '>'."""
    width = max([len(p.name) for p in predictions] + [5])
    print(source)
    print(f"     #  {'class':<{width}}  index       p")
    for rank, p in enumerate(predictions, 1):
        mark = ">" if p.index == target else " "
        print(f"   {mark}{rank:>2}  {p.name:<{width}}  {p.index:>5}  {p.probability:6.1%}")


# ----------------------------------------------------------------------------- sweep


def _fused_sweep_map(
    result: Sweep, how: str, folder: Path, name: str, cmap: str, arrays: dict[str, np.ndarray]
) -> dict[str, object]:
    """The sweep's CAMs fused into one map (`fuse_layers`): its PNG, npz entry and manifest."""
    from . import render
    from .fusion import fuse_layers

    fused = fuse_layers(result, how)
    key = f"fused-{how}"
    png = render.save_map_png(fused, 0, folder / name / f"{key}.png", cmap, "overlay")
    arrays[key] = fused.map[0].detach().cpu().numpy()
    return {
        "method": fused.method,
        "kind": fused.kind,
        "layer": fused.layer,
        "output_shape": None,
        "npz_key": key,
        "shape": list(fused.map[0].shape),
        "png": f"{name}/{png.name}",
        "display": f"{how} of {len(result)} layers' ReLU'd, min-max normalised maps",
        "params": fused.params,
    }


def cmd_sweep(args: argparse.Namespace) -> int:
    from . import render

    start = time.perf_counter()
    method = _method(args.method).name
    _check_cmap(args.cmap)
    _seed(args.seed)
    t = time.perf_counter()
    model = _load_model(args)
    model_seconds = time.perf_counter() - t
    loaded, failed = _load_images([args.image], args.max_pixels)
    if not loaded:
        return ImageError.exit_code
    source, image = loaded[0]
    t = time.perf_counter()
    result = sweep(model, image, method, args.layers, _target(args.target), output=args.output)
    sweep_seconds = time.perf_counter() - t
    out = Path(args.out)
    folder = _unique_dirs(out, [source])[0]
    folder.mkdir(parents=True, exist_ok=True)
    progress = _Progress(args, len(result) + 1, "drawing", unit="layer")
    t = time.perf_counter()
    try:
        name = f"sweep-{result.method}"
        first = next(iter(result.explanations.values()))
        render.to_pil(first.images[0]).save(folder / "input.png")
        maps = []
        for layer, e in result.explanations.items():
            mode = "overlay" if e.kind == "cam" else "gray"
            png = render.save_map_png(e, 0, folder / name / f"{layer}.png", args.cmap, mode)
            maps.append(
                {
                    "method": e.method,
                    "kind": e.kind,
                    "layer": layer,
                    "output_shape": list(result.shapes[layer]),
                    "npz_key": layer,
                    "shape": list(e.map[0].shape),
                    "png": f"{name}/{png.name}",
                    "display": "output " + "x".join(map(str, result.shapes[layer][1:])),
                    "params": e.params,
                }
            )
            progress.step(note=layer)
        figure = render.save_figure(
            render.sweep_figure(result, 0, args.cmap), folder / f"{name}.png"
        )
        progress.step()
    finally:
        progress.close()
    arrays = {layer: e.map[0].detach().cpu().numpy() for layer, e in result.explanations.items()}
    if args.fuse:
        maps.append(_fused_sweep_map(result, args.fuse, folder, name, args.cmap, arrays))
    np.savez_compressed(folder / f"{name}.npz", **arrays)
    entry = {
        "source": source,
        "folder": str(folder),
        "image_size": list(image.size),
        "target": {
            "index": first.targets[0],
            "name": first.target_names[0],
            "probability": first.probabilities[0],
        },
        "predictions": [asdict(p) for p in (first.predictions or [[]])[0]],
        "maps": maps,
        "files": {
            "input": "input.png",
            "sweep": figure.name,
            "maps": f"{name}.npz",
            "manifest": f"{name}.json",
        },
        "timings": {
            "load_model": model_seconds,
            "sweep": sweep_seconds,
            "render": time.perf_counter() - t,
        },
    }
    run = _run_facts(args, model, "sweep", args.argv)
    run["methods"] = [result.method]
    run["layer"] = f"{args.layers} ({len(result)} layers)"
    run["timings"] = {"load_model": model_seconds, "total": time.perf_counter() - start}
    _write_sweep_manifest(out, entry, run, result)
    report = _report(out, run, [entry], failed)
    if args.json:
        _finish(args, out, run, [entry], failed, report)
        return 0
    t = entry["target"]
    if args.quiet:
        print(f"{source}: {result.method} over {len(result)} layers -> {relative(figure)}")
        print(f"report: {relative(report)}")
        return 0
    print(
        f"{result.method} over {len(result)} layers of {model.name} for {t['name']} "
        f"({t['index']}, p = {t['probability']:.2f}) in {sweep_seconds:.2f} s"
    )
    print(f"  figure: {relative(figure)}")
    print(f"  files:  {relative(folder)}/  ({len(maps)} layer PNGs in {name}/, {name}.npz)")
    print(f"report: {relative(report)}")
    return 0


def _write_sweep_manifest(
    out: Path, entry: dict[str, Any], run: dict[str, Any], result: Sweep
) -> None:
    folder = Path(entry["folder"])
    manifest = {
        "cnnvis": __version__,
        "command": "sweep",
        "source": entry["source"],
        "image_size": entry["image_size"],
        "model": run["model"],
        "weights": run["weights"],
        "device": run["device"],
        "input_size": run["input_size"],
        "method": result.method,
        "layers": entry["maps"],
        "target": {"requested": run["target"], **entry["target"]},
        "predictions": entry["predictions"],
        "files": entry["files"],
        "seed": run["seed"],
        "versions": run["versions"],
        "timings": {k: round(v, 4) for k, v in entry["timings"].items()},
        "argv": run["argv"],
    }
    path = folder / entry["files"]["manifest"]
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    entry["folder"] = _relative_to(folder, out)


# ----------------------------------------------------------------------------- features


def cmd_features(args: argparse.Namespace) -> int:
    """`cnnvis features`: lives in `cnnvis.features_cli` beside the feature-visualization code."""
    from .features_cli import cmd_features as run_features

    return run_features(args)


# ----------------------------------------------------------------------------- classify


def cmd_classify(args: argparse.Namespace) -> int:
    from .api import classify

    model = _load_model(args)
    loaded, failed = _load_images(args.images or ["sample:cat"], args.max_pixels)
    results = []
    if loaded:
        preds = classify(model, [image for _, image in loaded], args.top_k, output=args.output)
        for (source, _), p in zip(loaded, preds, strict=True):
            results.append({"source": source, "predictions": [asdict(x) for x in p]})
            if not args.json:
                _print_predictions(source, p)
    if args.json:
        dump_json({"model": model.name, "images": results, "failed": failed})
    return _exit_code(len(loaded), len(failed))


# ----------------------------------------------------------------------------- layers


def cmd_layers(args: argparse.Namespace) -> int:
    from .layers import list_layers

    model = _load_model(args)
    size = model.preprocess.crop_size
    infos = {i.name: i for i in list_layers(model.module, (1, 3, size, size), args.filter)}
    order = [name for name, _ in model.module.named_modules() if name in infos]
    if args.json:
        dump_json([{**asdict(infos[n]), "spatial": infos[n].spatial} for n in order])
        return 0
    if not order:
        print(f"{model.name}: no layer matches {args.filter!r}", file=sys.stderr)
        return 0
    default = next((n for n in order if infos[n].default), None)
    print(f"{model.name}: {len(order)} layers, input 3x{size}x{size}")
    print("  * default layer for CAM methods (--layer auto)")
    print("  + a layer of `cnnvis sweep --layers all`")
    width = min(60, max(len(n) + 2 * n.count(".") for n in order) + 2)
    types = max(len(infos[n].type) for n in order)
    print(f"\n   {'layer':<{width}} {'type':<{types}}  output")
    for name in order:
        info = infos[name]
        mark = "*" if info.default else ("+" if info.sweep else " ")
        shape = "x".join(map(str, info.output_shape[1:])) if info.output_shape else "(not run)"
        calls = f"  (runs {info.calls}x)" if info.calls > 1 else ""
        label = "  " * name.count(".") + name
        print(f" {mark} {label:<{width}} {info.type:<{types}}  {shape}{calls}")
    if default is not None:
        print(f"\ndefault layer: {default}")
    return 0


# ----------------------------------------------------------------------------- methods, models


# the keys of `cnnvis methods --json`, in its order (a subset of MethodInfo.to_row())
METHOD_JSON_KEYS = ("name", "kind", "summary", "formula", "paper", "needs", "passes")


def cmd_methods(args: argparse.Namespace) -> int:
    rows = [m.to_row() for m in list_methods()]
    if args.json:
        dump_json([{key: r[key] for key in METHOD_JSON_KEYS} for r in rows])
        return 0
    width = max(len(r["name"]) for r in rows) + 2
    pad = " " * (width + 8)
    for r in rows:
        needs = ", ".join(r["needs"]) or "an image"
        print(f"{r['name']:<{width}}{r['kind']:<8}{r['summary']}")
        print(f"{pad}{r['formula']}")
        print(f"{pad}paper: {r['paper']}")
        print(f"{pad}needs: {needs}  ·  cost: {r['passes']}")
    print("\npixel: a map per input pixel (N, 3, H, W); cam: a map at a layer, upsampled (N, H, W)")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .zoo import available_models

    entries = available_models(args.filter)
    if args.json:
        dump_json(entries)
        return 0
    if not entries:
        print(f"no model matches {args.filter!r}", file=sys.stderr)
        return 0
    labels = {True: "weights here", False: "downloads on first use", None: "timm's cache"}
    width = max(len(e["name"]) for e in entries) + 2
    titles = {
        "default": "default: offline, ImageNet weights shipped with cnnvis's dependencies",
        "torchvision": "torchvision (pass --weights none for random init, no download)",
        "timm": "timm",
    }
    for source in ("default", "torchvision", "timm"):
        group = [e for e in entries if e["source"] == source]
        if not group:
            continue
        print(f"{titles[source]}:")
        for e in group:
            print(f"  {e['name']:<{width}}{labels[e.get('local')]}")
        print()
    if args.filter is None:
        print("timm's models are listed with --filter, e.g. cnnvis models --filter 'timm:*resnet*'")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """`cnnvis serve`: lives in `cnnvis.web_cli` beside the web app."""
    from .web_cli import cmd_serve as run_serve

    return run_serve(args)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """`cnnvis evaluate`: lives in `cnnvis.evaluate_cli` beside the metrics."""
    from .evaluate_cli import cmd_evaluate as run_evaluate

    return run_evaluate(args)


def cmd_batch(args: argparse.Namespace) -> int:
    """`cnnvis batch`: lives in `cnnvis.batch_cli` beside the batch engines."""
    from .batch_cli import cmd_batch as run_batch

    return run_batch(args)
