"""The evaluation's protocol: metric names and groups read into metric lists, the settings
checked and recorded, and the stable seeds derived from them."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .baselines import BASELINES, RANDOM_DRAWS
from .errors import EvaluationError
from .faithfulness import ROAD_FRACTIONS
from .metrics import GROUPS, METRICS, RANDOMIZATION_MODES

DEFAULT_METRICS = ("faithfulness", "localisation")


@dataclass(frozen=True)
class Protocol:
    """A named set of defaults for the settings that set an evaluation's cost: deletion /
    insertion `steps`, `random_draws`, the ROAD `road_fractions`, and the `metrics` run when
    none are named. Settings given explicitly override it."""

    name: str
    steps: int
    random_draws: int
    road_fractions: tuple[float, ...]
    metrics: tuple[str, ...]


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        # one image in seconds: 6 steps per curve, 2 random draws, no ROAD unless asked for
        # (imputation is slow on a CPU); ROAD, when named, at 3 fractions. The default model,
        # 3 methods: 110 forward passes per image instead of 3,418
        Protocol(
            "quick",
            steps=6,
            random_draws=2,
            road_fractions=(0.25, 0.5, 0.75),
            metrics=("deletion", "insertion", "average-drop", "increase", "localisation"),
        ),
        # the published protocols: RISE's 100 steps (here 2 x 99 inputs per map), ROAD at 9
        # fractions, the random baseline as the mean of 8 draws
        Protocol(
            "thorough",
            steps=100,
            random_draws=RANDOM_DRAWS,
            road_fractions=ROAD_FRACTIONS,
            metrics=DEFAULT_METRICS,
        ),
    )
}
DEFAULT_PROTOCOL = "quick"


def get_protocol(name: str) -> Protocol:
    """The protocol called `name` ("quick" or "thorough"); EvaluationError otherwise."""
    if name not in PROTOCOLS:
        raise EvaluationError(
            f"unknown protocol {name!r}; choose {' or '.join(PROTOCOLS)} (quick: one image in "
            "seconds; thorough: the published settings)"
        )
    return PROTOCOLS[name]


def resolve_metrics(
    spec: str | Sequence[str] | None, default: Sequence[str] = DEFAULT_METRICS
) -> tuple[list[str], bool]:
    """Metric names from names and groups ("faithfulness", "localisation", "sanity", "all");
    `default` when none are given; also whether localisation was asked for by name (then
    missing boxes are an error)."""
    explicit = spec is not None
    items = default if spec is None else spec
    if isinstance(items, str):
        items = [s.strip() for s in items.split(",") if s.strip()]
    chosen: list[str] = []
    for item in items:
        if item == "all":
            chosen += [*METRICS, *RANDOMIZATION_MODES]
        elif item in GROUPS:
            chosen += GROUPS[item]
        elif item == "road":
            chosen += ["road-morf", "road-lerf"]
        elif item in ("average-drop-increase", "confidence"):
            chosen += ["average-drop", "increase"]
        elif item in METRICS or item in RANDOMIZATION_MODES:
            chosen.append(item)
        else:
            from ..errors import unknown

            names = [*METRICS, *RANDOMIZATION_MODES, *GROUPS, "road", "all"]
            raise EvaluationError(unknown("metric", item, names, "see cnnvis.evaluate.METRICS"))
    if not chosen:
        raise EvaluationError("no metric given")
    wants_boxes = explicit and any(
        METRICS[m].group == "localisation" for m in chosen if m in METRICS
    )
    return list(dict.fromkeys(chosen)), wants_boxes


def check_protocol(
    steps: int,
    batch_size: int,
    fractions: Sequence[float],
    baselines: Sequence[str],
    grid: int,
    draws: int,
) -> None:
    """Refuse settings that cannot give numbers (EvaluationError saying which and why)."""
    if draws < 1:
        raise EvaluationError(f"random_draws must be at least 1, got {draws}")
    if steps < 1:
        raise EvaluationError(f"steps must be at least 1, got {steps}")
    if batch_size < 1:
        raise EvaluationError(f"batch_size must be at least 1, got {batch_size}")
    if grid < 1:
        raise EvaluationError(f"random_grid must be at least 1, got {grid}")
    if not fractions or any(not 0 < f < 1 for f in fractions):
        raise EvaluationError(
            f"ROAD fractions must lie strictly between 0 and 1, got {list(fractions)}"
        )
    unknown_baselines = [b for b in baselines if b not in BASELINES]
    if unknown_baselines:
        raise EvaluationError(
            f"unknown baseline(s) {', '.join(unknown_baselines)}; choose from {', '.join(BASELINES)}"
        )


def protocol_options(given: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that pin the numbers (the table's notes, the JSON, and the runner's own
    options: substrates may be tensors here)."""

    return {
        "protocol": given["protocol"],
        "steps": given["steps"],
        "substrate": given["substrate"],
        "insertion_substrate": given["insertion_substrate"],
        "blur": "Gaussian, kernel 11, sigma 5",
        "score": "softmax probability of the explained class",
        "road_fractions": list(given["road_fractions"]),
        "road_noise": given["road_noise"],
        "random_grid": given["random_grid"],
        "random_draws": given["random_draws"],
        "tolerance": given["tolerance"],
        "target": "top-1" if given["target"] is None else str(given["target"]),
        "batch_size": given["batch_size"],
        "seed": given["seed"],
        "randomization_groups": given["randomization_groups"],
        "baselines": list(given["baselines"]),
        "output": given["output"],
    }


def reported_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options as reported: tensors (substrates given as tensors) by their shape."""
    return {
        k: f"tensor{tuple(v.shape)}" if isinstance(v, torch.Tensor) else v
        for k, v in options.items()
    }


def stable_seed(*parts: int | str) -> int:
    """A stable seed from ints and strings (crc32 of names: the same in every run)."""
    value = 0
    for part in parts:
        n = zlib.crc32(part.encode()) if isinstance(part, str) else int(part)
        value = (value * 1_000_003 + n) % (2**63)
    return value


def seeded_generator(*parts: int | str) -> torch.Generator:
    """A CPU generator seeded with `stable_seed(*parts)`."""
    return torch.Generator().manual_seed(stable_seed(*parts))
