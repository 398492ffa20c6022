"""The output folder of `cnnvis explain` and `cnnvis sweep`, written in one place.

OUT/<image>/ holds input.png, the figures, two PNGs per map (its display and the signed raw
map), the raw maps (maps.npz, or sweep-METHOD.npz and one PNG per layer) and the manifest;
OUT/report.html is the page over all of them. Each writer returns the image's entry: the facts
that its manifest, the report and the terminal summary (`print_summary`) are made from.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import manifest, render
from ..explanation import Explanation, Prediction, Sweep
from ..file_names import inside, safe_name, unique_stems
from ..files import write_npz
from .common import Progress, dump_json, explained, print_predictions, relative


def unique_dirs(root: Path, sources: Sequence[str]) -> list[Path]:
    """One folder per image under `root`, named after its stem; repeats get -2, -3, ..."""
    seen: dict[str, int] = {}
    dirs = []
    for source in sources:
        stem = _stem(source)
        seen[stem] = seen.get(stem, 0) + 1
        dirs.append(root / (stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"))
    return dirs


def _stem(source: str) -> str:
    text = str(source)
    if text.lower().startswith("sample:"):
        return safe_name(text.split(":", 1)[1] or "sample")
    name = Path(text).stem or "image"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def image_entry(
    source: str, folder: Path, image: Any, first: Explanation, index: int
) -> dict[str, Any]:
    """The start of an image's entry: where it came from and went, its target and predictions."""
    return {
        "source": source,
        "folder": str(folder),
        "image_size": list(image.size),
        "target": manifest.target_facts(first, index),
        "predictions": manifest.prediction_facts(first, index),
    }


# ----------------------------------------------------------------------------- explain


def write_image_outputs(
    folder: Path,
    source: str,
    image: Any,
    index: int,
    explanations: list[Explanation],
    cmap: str,
) -> dict[str, Any]:
    """Figures, one PNG per map, maps.npz for image `index` of the batch; its manifest entry."""
    folder.mkdir(parents=True, exist_ok=True)
    first = explanations[0]
    files: dict[str, str] = {"input": "input.png"}
    render.to_pil(first.images[index]).save(folder / "input.png")
    fig = render.explanation_figure(explanations, index, cmap)
    files["figure"] = render.save_figure(fig, folder / "figure.png").name
    if len(explanations) > 1:
        fig = render.comparison_figure(explanations, index, cmap)
        files["comparison"] = render.save_figure(fig, folder / "comparison.png").name
    arrays: dict[str, Any] = {}
    maps = []
    keys = [manifest.map_key(e) for e in explanations]
    stems = unique_stems(keys)  # two keys that clean to one file name get two files
    for key, e in zip(keys, explanations, strict=True):
        arrays[key] = e.map[index].detach().cpu().numpy()
        maps.append(_write_map_pngs(folder, stems[key], e, index, cmap))
    arrays["image"] = first.images[index].detach().cpu().numpy()
    write_npz(folder / "maps.npz", arrays)
    files["maps"] = "maps.npz"
    files["manifest"] = "manifest.json"
    return image_entry(source, folder, image, first, index) | {"maps": maps, "files": files}


def _write_map_pngs(
    folder: Path, stem: str, e: Explanation, index: int, cmap: str
) -> dict[str, Any]:
    """Two PNGs per map at the input's resolution: its main display (a CAM over the image in
    `cmap`; a pixel map as the tutorial's grayscale) and the raw signed map in a diverging
    colormap centred on zero (a pixel map's R, G, B summed first, RISE's minus its mean)."""
    entry = manifest.map_facts(e, index)
    if e.kind == "cam":
        png = render.save_map_png(e, index, inside(folder, folder / f"{stem}.png"), cmap, "overlay")
        entry["display"] = f"ReLU, over the image ({cmap})"
    else:
        png = render.save_map_png(e, index, inside(folder, folder / f"{stem}.png"), mode="gray")
        entry["display"] = "grayscale |R|+|G|+|B|, to the 99th percentile"
    entry["png"] = png.name
    signed_path = inside(folder, folder / f"{stem}.signed.png")
    render.save_map_png(e, index, signed_path, mode="signed")
    entry["signed_display"] = (
        "raw map, diverging colormap centred on zero, clipped at the 99th percentile of |map|"
        if e.kind == "cam"
        else "sum of R, G, B (rise: minus its mean over the image), diverging colormap centred "
        "on zero, clipped at the 99th percentile of |map|"
    )
    entry["signed_png"] = signed_path.name
    return entry


def write_explain_manifest(out: Path, entry: dict[str, Any], run: Mapping[str, Any]) -> None:
    """manifest.json in the image's folder; the entry's folder becomes relative to `out`."""
    folder = Path(entry["folder"])
    (folder / "manifest.json").write_text(manifest.dumps(manifest.explain_manifest(entry, run)))
    entry["folder"] = _relative_to(folder, out)


# ----------------------------------------------------------------------------- sweep


def write_sweep_outputs(
    folder: Path, result: Sweep, cmap: str, fuse: str | None, progress: Progress
) -> tuple[list[dict[str, Any]], Path]:
    """input.png, one PNG per layer in sweep-METHOD/, the grid sweep-METHOD.png and the raw
    maps sweep-METHOD.npz (with --fuse, the fused map too); the layers' entries and the grid."""
    name = f"sweep-{result.method}"
    first = next(iter(result.explanations.values()))
    render.to_pil(first.images[0]).save(folder / "input.png")
    maps: list[dict[str, Any]] = []
    stems = unique_stems(result.explanations)  # two layers never share one PNG
    for layer, e in result.explanations.items():
        mode = "overlay" if e.kind == "cam" else "gray"
        path = inside(folder, folder / name / f"{stems[layer]}.png")
        png = render.save_map_png(e, 0, path, cmap, mode)
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
    figure = render.save_figure(render.sweep_figure(result, 0, cmap), folder / f"{name}.png")
    progress.step()
    arrays: dict[str, Any] = {
        layer: e.map[0].detach().cpu().numpy() for layer, e in result.explanations.items()
    }
    if fuse:
        maps.append(_fused_sweep_map(result, fuse, folder, name, cmap, arrays))
    write_npz(folder / f"{name}.npz", arrays)
    return maps, figure


def _fused_sweep_map(
    result: Sweep, how: str, folder: Path, name: str, cmap: str, arrays: dict[str, np.ndarray]
) -> dict[str, object]:
    """The sweep's CAMs fused into one map (`fuse_layers`): its PNG, npz entry and manifest."""
    from ..fusion import fuse_layers

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


def write_sweep_manifest(
    out: Path, entry: dict[str, Any], run: Mapping[str, Any], method: str
) -> None:
    """sweep-METHOD.json in the image's folder; the entry's folder becomes relative to `out`."""
    folder = Path(entry["folder"])
    text = manifest.dumps(manifest.sweep_manifest(entry, run, method))
    (folder / entry["files"]["manifest"]).write_text(text)
    entry["folder"] = _relative_to(folder, out)


# ----------------------------------------------------------------------------- the summary


def print_summary(
    args: argparse.Namespace,
    out: Path,
    run: dict[str, Any],
    entries: list[dict[str, Any]],
    failed: list[dict[str, str]],
    report: Path | None,
) -> None:
    """The terminal summary (a predictions table per image, where files went) or --json."""
    if args.json:
        dump_json(_json_summary(out, run, entries, failed, report))
        return
    for e in entries:
        folder = out / e["folder"]
        if args.quiet:
            t = e["target"]
            print(
                f"{e['source']}: {t['name']} ({t['index']}) {t['probability']:.1%} -> {relative(folder)}/"
            )
            continue
        print_predictions(
            e["source"], [Prediction(**p) for p in e["predictions"]], e["target"]["index"]
        )
        print(f"  {explained(e['target'])}")
        print(f"  files: {relative(folder)}/  ({_describe_files(e)})")
    if report is not None:
        print(f"report: {relative(report)}")
    if failed and not args.quiet:
        print(f"{len(failed)} of {len(failed) + len(entries)} images failed (see the errors above)")


def _json_summary(
    out: Path,
    run: dict[str, Any],
    entries: list[dict[str, Any]],
    failed: list[dict[str, str]],
    report: Path | None,
) -> dict[str, Any]:
    """What --json prints: the run, and for each image its target, predictions and files."""
    return {
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


def _describe_files(entry: dict[str, Any]) -> str:
    files = entry["files"]
    figures = [files[k] for k in ("figure", "comparison", "sweep") if files.get(k)]
    n = len(entry["maps"])
    maps = f"{n} map{'s' if n != 1 else ''} as PNG"
    return ", ".join([*figures, maps, "maps.npz", "manifest.json"])


# ----------------------------------------------------------------------------- the report


def write_report(
    out: Path,
    run: Mapping[str, Any],
    entries: Sequence[Mapping[str, Any]],
    failed: Sequence[Mapping[str, str]],
) -> Path:
    """OUT/report.html over every image's folder (`cnnvis.run_report`)."""
    from ..run_report import write_report

    return write_report(out, run, entries, failed)


def _relative_to(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
