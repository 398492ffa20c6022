"""Run manifests: what was run, on what, with which result and versions, in one place.

The command line writes one per image (`manifest.json` of `cnnvis explain`, `sweep-METHOD.json`
of `cnnvis sweep`), the web page offers one per result as a download, and a batch run keeps one
for the whole run (`run.json`). Each keeps its own fields; the pieces they share (the header,
the model, the target, each map's facts, the version facts, the JSON form) are built here.
"""

from __future__ import annotations

import importlib
import json
import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import __version__

if TYPE_CHECKING:
    from .explanation import Explanation, Sweep
    from .model import LoadedModel

# The packages whose versions a manifest names, with the module that has `__version__`.
PACKAGES = {
    "python": None,
    "torch": "torch",
    "torchvision": "torchvision",
    "numpy": "numpy",
    "pillow": "PIL",
    "matplotlib": "matplotlib",
    "timm": "timm",
}
OPTIONAL_PACKAGES = ("timm",)
SERVED_PACKAGES = ("python", "torch", "numpy")  # what the web page's manifest names
MODEL_KEYS = ("model", "weights", "device", "input_size")


# ----------------------------------------------------------------------------- shared pieces


def version_facts(packages: Sequence[str] = tuple(PACKAGES)) -> dict[str, str]:
    """{'cnnvis': ..., then each of `packages` in that order: its version}; an optional
    package that is not installed is left out."""
    versions = {"cnnvis": __version__}
    for name in packages:
        module = PACKAGES[name]
        if module is None:
            versions[name] = platform.python_version()
            continue
        try:
            versions[name] = importlib.import_module(module).__version__
        except ImportError:  # pragma: no cover - only optional packages may be missing
            if name not in OPTIONAL_PACKAGES:
                raise
    return versions


def model_facts(model: LoadedModel) -> dict[str, Any]:
    """The model's name, weights, device and input size, as every manifest names them."""
    return {
        "model": model.name,
        "weights": model.weights,
        "device": str(model.device),
        "input_size": model.preprocess.crop_size,
    }


def map_key(e: Explanation) -> str:
    """The map's name in maps.npz, the manifest and its PNG: 'gradient', 'grad-cam@layer4'."""
    return e.method if e.layer is None else f"{e.method}@{e.layer}"


def map_facts(e: Explanation, index: int) -> dict[str, Any]:
    """One map of image `index`: method, kind, layer, npz key, shape, dtype, parameters."""
    return {
        "method": e.method,
        "kind": e.kind,
        "layer": e.layer,
        "npz_key": map_key(e),
        "shape": list(e.map[index].shape),
        "dtype": str(e.map.dtype).removeprefix("torch."),
        "params": e.params,
    }


def target_facts(e: Explanation, index: int) -> dict[str, Any]:
    """The class explained for image `index`: its index, name and probability."""
    return {
        "index": e.targets[index],
        "name": e.target_names[index],
        "probability": e.probabilities[index],
    }


def prediction_facts(e: Explanation, index: int) -> list[dict[str, Any]]:
    """The top-k predictions of image `index` as dicts (none if the result has none)."""
    return [asdict(p) for p in (e.predictions or [[]] * (index + 1))[index]]


def header(
    command: str,
    source: str,
    image_size: Any,
    model: Mapping[str, Any],
    result_id: str | None = None,
) -> dict[str, Any]:
    """The first fields of an image's manifest: cnnvis's version, the command, (the result's
    id,) the image and the model (`model` holds the `MODEL_KEYS`)."""
    facts: dict[str, Any] = {"cnnvis": __version__, "command": command}
    if result_id is not None:
        facts["id"] = result_id
    facts |= {"source": source, "image_size": image_size}
    return facts | {key: model[key] for key in MODEL_KEYS}


def dumps(manifest: Mapping[str, Any]) -> str:
    """A manifest as the JSON text every manifest file is written in."""
    return json.dumps(manifest, indent=2, default=str) + "\n"


# ----------------------------------------------------------------------------- command line


def run_facts(
    command: str, argv: Sequence[str], model: LoadedModel, target: Any, seed: int
) -> dict[str, Any]:
    """What a whole `cnnvis explain` / `sweep` run shares: command, model, target, versions."""
    return {
        "command": command,
        "argv": list(argv),
        "started": datetime.now().isoformat(timespec="seconds"),
        **model_facts(model),
        "target": target,
        "seed": seed,
        "versions": version_facts(),
    }


def explain_manifest(entry: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
    """manifest.json of one image of `cnnvis explain`: the run's facts and this image's maps."""
    return header(run["command"], entry["source"], entry.get("image_size"), run) | {
        "layer": _layer_of(entry),
        "target": {"requested": run["target"], **entry["target"]},
        "predictions": entry["predictions"],
        "methods": [{k: v for k, v in m.items() if k not in ("display",)} for m in entry["maps"]],
        "files": entry["files"],
        "seed": run["seed"],
        "versions": run["versions"],
        "timings": _rounded(entry["timings"]),
        "argv": run["argv"],
    }


def sweep_manifest(entry: Mapping[str, Any], run: Mapping[str, Any], method: str) -> dict[str, Any]:
    """sweep-METHOD.json of `cnnvis sweep`: the run's facts and one entry per layer."""
    return header("sweep", entry["source"], entry["image_size"], run) | {
        "method": method,
        "layers": entry["maps"],
        "target": {"requested": run["target"], **entry["target"]},
        "predictions": entry["predictions"],
        "files": entry["files"],
        "seed": run["seed"],
        "versions": run["versions"],
        "timings": _rounded(entry["timings"]),
        "argv": run["argv"],
    }


def _layer_of(entry: Mapping[str, Any]) -> str | None:
    layers = [m["layer"] for m in entry["maps"] if m.get("layer")]
    return layers[0] if len(set(layers)) == 1 else (", ".join(dict.fromkeys(layers)) or None)


def _rounded(timings: Mapping[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in timings.items()}


# ----------------------------------------------------------------------------- web page


def served_manifest(
    kind: str,
    result_id: str,
    facts: Mapping[str, Any],
    explanations: Sequence[Explanation],
    sweep: Sweep | None = None,
) -> dict[str, Any]:
    """The manifest of one web result (`kind` 'explain' or 'sweep'): the fields of the CLI's
    manifest.json for its one image, and the keys of its maps.npz download."""
    first = explanations[0]
    manifest = header(f"serve {kind}", facts["source"], facts["image_size"], facts, result_id)
    manifest |= {
        "target": {"requested": facts["target"], **target_facts(first, 0)},
        "predictions": prediction_facts(first, 0),
        "seconds": round(facts["seconds"], 4),
        "versions": version_facts(SERVED_PACKAGES),
    }
    if sweep is not None:
        manifest["method"] = sweep.method
        manifest["layers"] = [
            {"layer": layer, "output_shape": list(sweep.shapes[layer]), "npz_key": layer}
            for layer in sweep.layers
        ]
        keys = list(sweep.layers)
    else:
        manifest["layer"] = facts.get("layer")
        manifest["methods"] = [map_facts(e, 0) for e in explanations]
        manifest["skipped"] = facts.get("skipped", [])
        keys = [map_key(e) for e in explanations]
    manifest["files"] = {"maps": "maps.npz", "npz_keys": [*keys, "image"]}
    return manifest


# ----------------------------------------------------------------------------- batch runs


def batch_manifest(
    model: LoadedModel,
    inputs: Mapping[str, Any],
    target: Any,
    maps: Sequence[Mapping[str, Any]],
    params: Any,
    summary: Mapping[str, Any],
    seconds: float,
) -> dict[str, Any]:
    """run.json of `cnnvis batch`: the settings and the summary of the last run."""
    return {
        "cnnvis": __version__,
        "model": model.name,
        "weights": model.weights,
        "input": inputs,
        "target": target,
        "maps": maps,
        "params": params,
        "summary": summary,
        "seconds_total": round(seconds, 3),
    }
