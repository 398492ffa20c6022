"""The per-image metrics of every map of one image: the faithfulness plans run together in
shared batches, the pointing games, and the random draws merged into one "random" baseline."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..model import LoadedModel
from . import maps
from .baselines import DRAW_MARK, REVERSED_PREFIX
from .faithfulness import (
    Anchors,
    Curve,
    anchor_plan,
    average_drop_plan,
    deletion_insertion_plan,
    execute,
    road_plan,
    substrate,
)
from .image_maps import Entries
from .localisation import energy_pointing_game, pointing_game
from .protocol import seeded_generator, stable_seed
from .result import Evaluation, Score
from .scoring import Scorer

log = logging.getLogger(__name__)


def faithfulness_scores(
    result: Evaluation,
    scorer: Scorer,
    lm: LoadedModel,
    name: str,
    index: int,
    x: torch.Tensor,
    target: int,
    entries: Entries,
    metrics: Sequence[str],
    options: Mapping[str, Any],
) -> None:
    """Plan every faithfulness metric of every map of one image and run them together."""
    curves = [m for m in ("deletion", "insertion") if m in metrics]
    drop = any(m in metrics for m in ("average-drop", "increase"))
    road = [m for m in ("road-morf", "road-lerf") if m in metrics]
    if not (curves or drop or road):
        return
    deleted = substrate(x[None], options["substrate"], lm.preprocess)[0]
    start = substrate(x[None], options["insertion_substrate"], lm.preprocess)[0]
    anchors = Anchors()
    plans = [anchor_plan(x, deleted, start, target, anchors)]
    owners = [("", "")]
    for key, (role, order2d, rel) in entries.items():
        seed = options["seed"]
        rank = maps.ranks(order2d, seeded_generator(seed, index, key, "order"))
        if curves:
            plans.append(
                deletion_insertion_plan(
                    name,
                    key,
                    x,
                    rank,
                    target,
                    anchors,
                    deleted=deleted,
                    start=start,
                    steps=options["steps"],
                    metrics=tuple(curves),
                )
            )
            owners.append((key, role))
        if drop and not key.startswith(REVERSED_PREFIX):
            plans.append(
                average_drop_plan(x, maps.unit_weights(rel), target, anchors, deleted=deleted)
            )
            owners.append((key, role))
        if road and not key.startswith(REVERSED_PREFIX):
            plans.append(
                road_plan(
                    name,
                    key,
                    x,
                    rank,
                    target,
                    fractions=tuple(options["road_fractions"]),
                    noise=options["road_noise"],
                    seed=stable_seed(seed, index, key, "road"),
                    metrics=tuple(road),
                )
            )
            owners.append((key, role))
    for (key, role), found in zip(owners, execute(scorer, plans), strict=True):
        for metric, value in found.items():  # the anchors' plan finds nothing
            if metric not in metrics:
                continue
            if isinstance(value, Curve):
                result.curves.append(value)
                value = value.value
            result.scores.append(Score(name, key, role, metric, float(value)))
    if road:
        _reversed_road(result, name, entries, metrics)


def _reversed_road(result: Evaluation, name: str, entries: Entries, metrics: Sequence[str]) -> None:
    """A reversed order's ROAD is its method's with MoRF and LeRF swapped: no new inputs."""
    swap = {"road-morf": "road-lerf", "road-lerf": "road-morf"}
    for key in entries:
        if not key.startswith(REVERSED_PREFIX):
            continue
        method = key.removeprefix(REVERSED_PREFIX)
        own = [c for c in result.curves if c.image == name and c.map == method]
        for c in own:
            if c.metric in swap and swap[c.metric] in metrics:
                flipped = Curve(name, key, swap[c.metric], c.fractions, c.scores, c.value)
                result.curves.append(flipped)
                result.scores.append(Score(name, key, "baseline", flipped.metric, c.value))


def localisation_scores(
    result: Evaluation,
    name: str,
    entries: Entries,
    mask: torch.Tensor | None,
    metrics: Sequence[str],
    tolerance: float,
) -> None:
    """Pointing games of every map but the reversed orders (an order, not a map)."""
    if mask is None:
        log.info("no box for %s and its class: localisation skipped there", name)
        return
    for key, (role, _, rel) in entries.items():
        if key.startswith(REVERSED_PREFIX):
            continue
        if "pointing-game" in metrics:
            hit = pointing_game(rel, mask, tolerance)
            result.scores.append(Score(name, key, role, "pointing-game", hit))
        if "energy-pointing-game" in metrics:
            share = energy_pointing_game(rel, mask)
            result.scores.append(Score(name, key, role, "energy-pointing-game", share))


def merge_random_draws(result: Evaluation, image: str) -> None:
    """Replace the scores and curves of random#k by their mean, as "random"."""
    scores: dict[str, list[float]] = {}
    kept = []
    for s in result.scores:
        if s.image == image and DRAW_MARK in s.map:
            scores.setdefault(s.metric, []).append(s.value)
        else:
            kept.append(s)
    base = "random"
    kept += [Score(image, base, "baseline", m, sum(v) / len(v)) for m, v in scores.items()]
    result.scores = kept
    curves: dict[str, list[Curve]] = {}
    others = []
    for c in result.curves:
        if c.image == image and DRAW_MARK in c.map:
            curves.setdefault(c.metric, []).append(c)
        else:
            others.append(c)
    for metric, group in curves.items():
        mean = torch.stack([c.scores for c in group]).mean(dim=0)
        value = sum(c.value for c in group) / len(group)
        others.append(Curve(image, base, metric, group[0].fractions, mean, value))
    result.curves = others
