"""One batch of decoded images -> predictions, maps and map statistics, as NumPy columns.

Both engines call `explain_columns` (the Ray engine inside its model-holding actors), so they
compute the same numbers. Map statistics, per image, on the raw signed map m:
min, max, mean; and `energy_top10`, the share of the map's positive mass s (CAMs: ReLU(m);
pixel maps: |R| + |G| + |B|) in its top 10% of pixels, sum(top 10% of s) / sum(s): 0.1 for a flat
map, 1.0 when all the mass sits in a tenth of the image, NaN for a blank map.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from ..api import explain_many
from ..errors import CnnvisError, LayerError, MethodError
from ..model import LoadedModel
from ..targets import parse_target
from .dataset import to_display
from .job import Job, MapKey

TOP_FRACTION = 0.1


def map_stats(maps: torch.Tensor, kind: str) -> dict[str, np.ndarray]:
    """min, max, mean and energy_top10 of each map in a batch (see the module docstring)."""
    flat = maps.detach().flatten(1).double()
    mass = maps.detach().clamp(min=0) if kind == "cam" else maps.detach().abs().sum(dim=1)
    mass = mass.flatten(1).double()
    k = max(1, math.ceil(TOP_FRACTION * mass.shape[1]))
    top = mass.topk(k, dim=1).values.sum(dim=1)
    total = mass.sum(dim=1)
    energy = torch.where(total > 0, top / total.clamp(min=1e-300), torch.nan)
    return {
        "min": flat.amin(dim=1).cpu().numpy(),
        "max": flat.amax(dim=1).cpu().numpy(),
        "mean": flat.mean(dim=1).cpu().numpy(),
        "energy_top10": energy.cpu().numpy(),
    }


def batch_target(job: Job, label_index: np.ndarray) -> Any:
    """The target for explain_many: per-image label indices, or the job's one rule."""
    if job.target == "label":
        return [int(i) for i in label_index]
    return parse_target(job.target)


def explain_columns(
    model: LoadedModel, pixels: torch.Tensor, label_index: np.ndarray, job: Job
) -> dict[str, np.ndarray]:
    """Columns for a batch of uint8 pixels (N, 3, H, W): top-1 and target, then per map key
    `KEY:map`, `KEY:layer_map` (CAMs), `KEY:min|max|mean|energy_top10`, `KEY:error_type|error`."""
    n = pixels.shape[0]
    start = time.perf_counter()
    x = model.preprocess.normalize(to_display(pixels.to(model.device, non_blocking=True)))
    failures: dict[str, CnnvisError] = {}
    results = explain_many(
        model,
        x,
        job.methods,
        job.layers or None,
        batch_target(job, label_index),
        output=job.output,
        failures=failures,
        top_k=1,
        params=job.params,
    )
    columns: dict[str, np.ndarray] = {}
    first = next(iter(results.values()), None)
    for key in job.keys:
        e = results.get((key.method, key.layer))
        if e is None:
            error = failures.get(key.method) or MethodError(f"{key.name} produced no map")
            columns.update(_error_columns(key, error, n))
            continue
        columns[f"{key.name}:map"] = e.map.detach().cpu().numpy()
        if e.layer_map is not None:
            columns[f"{key.name}:layer_map"] = e.layer_map.detach().cpu().numpy()
        for stat, values in map_stats(e.map, e.kind).items():
            columns[f"{key.name}:{stat}"] = values
        columns[f"{key.name}:error_type"] = np.full(n, None, dtype=object)
        columns[f"{key.name}:error"] = np.full(n, None, dtype=object)
    if first is not None:
        top = [p[0] for p in first.predictions or []]
        columns["pred_index"] = np.array([p.index for p in top], dtype=np.int64)
        columns["pred_name"] = np.array([p.name for p in top], dtype=object)
        columns["pred_prob"] = np.array([p.probability for p in top], dtype=np.float64)
        columns["target_index"] = np.array(first.targets, dtype=np.int64)
        columns["target_name"] = np.array(first.target_names, dtype=object)
        columns["target_prob"] = np.array(first.probabilities, dtype=np.float64)
    columns["seconds"] = np.full(n, (time.perf_counter() - start) / max(n, 1))
    return columns


def _error_columns(key: MapKey, error: Exception, n: int) -> dict[str, np.ndarray]:
    kind = type(error).__name__ if isinstance(error, MethodError | LayerError) else "MethodError"
    return {
        f"{key.name}:error_type": np.full(n, kind, dtype=object),
        f"{key.name}:error": np.full(n, str(error), dtype=object),
    }
