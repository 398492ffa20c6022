"""The maps of one image under evaluation: every method's (explained together), the shared
baselines (the random ones drawn several times) and each method's reversed order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..api import explain_many
from ..errors import CnnvisError, MethodError
from ..model import LoadedModel
from . import maps
from .baselines import DRAW_MARK, REVERSED_PREFIX, SHARED_BASELINES, baseline_maps
from .errors import EvaluationError
from .protocol import seeded_generator
from .result import Evaluation

Entries = dict[str, tuple[str, torch.Tensor, torch.Tensor]]  # name -> (role, order, relevance)


def image_maps(
    result: Evaluation,
    lm: LoadedModel,
    name: str,
    index: int,
    x: torch.Tensor,
    methods: Sequence[str],
    layers: list[str] | None,
    target: Any,
    params: Mapping[str, Mapping[str, Any]] | None,
    options: Mapping[str, Any],
) -> tuple[Entries, int, list[str]]:
    """The maps of one image: every method's, the shared baselines (random#k draws), and each
    method's reversed order; also the explained class and the methods that ran."""
    failures: dict[str, CnnvisError] = {}
    explained = explain_many(
        lm,
        x,
        list(methods),
        layers,
        target,
        output=options["output"],
        failures=failures,
        params=params,
    )
    for method, error in failures.items():
        result.failures[method] = str(error)
    ok = [m for m in methods if any(k[0] == m for k in explained)]
    if not ok:
        raise MethodError(f"no method could run on {name}: " + "; ".join(result.failures.values()))
    first = next(iter(explained.values()))
    t = first.targets[0]
    if t < 0:  # a unit, a mask, a similarity...: the metrics here score a class
        raise EvaluationError(
            f"evaluation scores a class's probability, and the target of {name} is "
            f"{first.target_names[0]}; give a class (top1, an index or a name)"
        )
    result.targets[name] = (t, first.target_names[0], first.probabilities[0])
    entries: Entries = {}
    for (method, _), e in explained.items():
        order, rel = maps.order_values(e.map)[0].cpu(), maps.relevance(e.map)[0].cpu()
        entries[method] = ("method", order, rel)
    shared = tuple(b for b in options["baselines"] if b in SHARED_BASELINES)
    generator = seeded_generator(options["seed"], index, "random")
    drawn = baseline_maps(
        x[0],
        shared,
        grid=options["random_grid"],
        draws=options["random_draws"],
        generator=generator,
    )
    for base, m2d in drawn.items():
        entries[base] = ("baseline", m2d, m2d)
    if "reversed" in options["baselines"]:
        for method in ok:
            flipped = -entries[method][1]
            entries[f"{REVERSED_PREFIX}{method}"] = ("baseline", flipped, flipped)
    for key, (role, _, _) in entries.items():
        key = key.split(DRAW_MARK)[0]
        bucket = result.methods if role == "method" else result.baselines
        if key not in bucket:
            bucket.append(key)
    return entries, t, ok
