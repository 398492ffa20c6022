"""`evaluate`: every method and baseline on every image and metric, in shared batches."""

from __future__ import annotations

import logging
import os
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..api import explain_many, prepare_inputs
from ..errors import CnnvisError, LayerError, MethodError
from ..layers import default_layer
from ..methods import get_method
from ..model import LoadedModel, as_loaded
from ..targets import TargetSpec
from . import maps
from .baselines import (
    BASELINES,
    DRAW_MARK,
    RANDOM_DRAWS,
    REVERSED_PREFIX,
    SHARED_BASELINES,
    baseline_maps,
)
from .errors import EvaluationError
from .faithfulness import (
    ROAD_FRACTIONS,
    ROAD_NOISE,
    Anchors,
    Curve,
    SubstrateSpec,
    anchor_plan,
    average_drop_plan,
    deletion_insertion_plan,
    execute,
    road_plan,
    substrate,
)
from .localisation import TOLERANCE, Boxes, energy_pointing_game, load_boxes, pointing_game
from .result import GROUPS, METRICS, RANDOMIZATION_MODES, Evaluation, Score
from .sanity import model_randomization
from .scoring import Scorer

log = logging.getLogger(__name__)

DEFAULT_METRICS = ("faithfulness", "localisation")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}


def resolve_metrics(spec: str | Sequence[str] | None) -> tuple[list[str], bool]:
    """Metric names from names and groups ("faithfulness", "localisation", "sanity", "all");
    also whether localisation was asked for by name (then missing boxes are an error)."""
    explicit = spec is not None
    items = DEFAULT_METRICS if spec is None else spec
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


def image_sources(images: Any) -> list[tuple[str, Any]]:
    """(name, source) pairs: folders are expanded to their image files (sorted); a tensor
    (N, C, H, W) gives one model input per row."""
    if isinstance(images, torch.Tensor):
        x = images if images.dim() == 4 else images[None]
        return [(f"tensor[{i}]", x[i : i + 1]) for i in range(x.shape[0])]
    items = list(images) if isinstance(images, list | tuple) else [images]
    found: list[tuple[str, Any]] = []
    for i, item in enumerate(items):
        if isinstance(item, str | os.PathLike) and Path(item).is_dir():
            files = sorted(p for p in Path(item).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise EvaluationError(f"no image files in the folder {item}")
            found += [(str(p), p) for p in files]
        elif isinstance(item, str | os.PathLike):
            found.append((str(item), item))
        elif isinstance(item, torch.Tensor):
            found += [(f"tensor[{i}.{j}]", src) for j, (_, src) in enumerate(image_sources(item))]
        else:
            found.append((f"image[{i}]", item))
    if not found:
        raise EvaluationError("no images given")
    return found


def _seed(*parts: int | str) -> int:
    """A stable seed from ints and strings (crc32 of names: the same in every run)."""
    value = 0
    for part in parts:
        n = zlib.crc32(part.encode()) if isinstance(part, str) else int(part)
        value = (value * 1_000_003 + n) % (2**63)
    return value


def _generator(*parts: int | str) -> torch.Generator:
    return torch.Generator().manual_seed(_seed(*parts))


def evaluate(
    model: nn.Module | LoadedModel,
    images: Any = "sample:cat",
    methods: str | Sequence[str] = ("grad-cam",),
    metrics: str | Sequence[str] | None = None,
    *,
    boxes: str | Path | Mapping[str, Any] | Boxes | None = None,
    layer: str | None = None,
    target: TargetSpec = None,
    output: str | None = None,
    steps: int = 100,
    substrate: SubstrateSpec = "mean",
    insertion_substrate: SubstrateSpec = "blur",
    road_fractions: Sequence[float] = ROAD_FRACTIONS,
    road_noise: float = ROAD_NOISE,
    baselines: Sequence[str] = BASELINES,
    random_grid: int = 7,
    random_draws: int = RANDOM_DRAWS,
    tolerance: float = TOLERANCE,
    randomization_groups: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> Evaluation:
    """Evaluate methods on images: faithfulness, localisation and sanity checks, each method
    beside the baselines (smooth random, centred Gaussian, Sobel edges, and its own reversed
    order), flagging every metric on which a method does not beat them.

    `images`: a path, a folder (all its images), "sample:NAME", a PIL image, a list of these, or
    an (N, C, H, W) tensor of model inputs. `metrics`: names or groups (default faithfulness and
    localisation; localisation only where `boxes` has the image; the bundled boxes cover the
    samples); "sanity", "cascading", "independent" add the randomization checks. `steps`:
    deletion/insertion steps; `substrate` / `insertion_substrate`: "mean" (0 in the normalized
    input), "black", "blur" (kernel 11, sigma 5), a number or a tensor. Perturbed inputs go
    through the model `batch_size` at a time under inference mode; the user's model is not
    modified (randomization works on a copy). The same `seed` gives the same numbers.
    """
    start_time = time.perf_counter()
    lm = as_loaded(model)
    names = [methods] if isinstance(methods, str) else list(methods)
    names = list(dict.fromkeys(get_method(m).name for m in names))
    if not names:
        raise EvaluationError("no method given")
    chosen, wants_boxes = resolve_metrics(metrics)
    _check_protocol(steps, batch_size, road_fractions, baselines, random_grid, random_draws)
    options = _protocol(locals())
    per_image = [m for m in chosen if m in METRICS]
    localisation = [m for m in per_image if METRICS[m].group == "localisation"]
    box_table = load_boxes(boxes) if localisation else None
    sources = image_sources(images)
    scorer = Scorer(lm, batch_size=batch_size, output=output)
    result = Evaluation(
        model=lm.name,
        methods=[],
        baselines=[],
        metrics=per_image + [m for m in chosen if m in RANDOMIZATION_MODES],
        images=[name for name, _ in sources],
        targets={},
        protocol=_public(options),
    )
    layers: list[str] | None = None
    for i, (name, source) in enumerate(sources):
        log.info("evaluating %s (%d/%d)", name, i + 1, len(sources))
        x, size = _input(lm, source)
        if i == 0:
            layers = _layer(lm, names, layer, tuple(x.shape))
        each = target[i] if isinstance(target, list | tuple) else target
        entries, t, ok = _entries(result, lm, name, i, x, names, layers, each, params, options)
        _faithfulness(result, scorer, lm, name, i, x[0], t, entries, per_image, options)
        if box_table is not None:
            mask = box_table.object_mask(name, t, lm.preprocess, size, tuple(x.shape[-2:]))
            _localisation(result, name, entries, mask, localisation, tolerance)
        _merge_draws(result, name)
        for mode in (m for m in chosen if m in RANDOMIZATION_MODES):
            result.randomization.append(
                model_randomization(
                    lm,
                    x,
                    ok,
                    mode=mode,
                    layer=layers[0] if layers else None,
                    target=t,
                    output=output,
                    seed=_seed(seed, i, mode),
                    groups=randomization_groups,
                    name=name,
                )
            )
    result.methods = [m for m in names if m in result.methods]
    _notes(result, localisation, wants_boxes, box_table)
    result.forwards = scorer.forwards
    result.seconds = time.perf_counter() - start_time
    return result


Entries = dict[str, tuple[str, torch.Tensor, torch.Tensor]]  # name -> (role, order, relevance)


def _entries(
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
    result.targets[name] = (t, first.target_names[0], first.probabilities[0])
    entries: Entries = {}
    for (method, _), e in explained.items():
        order, rel = maps.order_values(e.map)[0].cpu(), maps.relevance(e.map)[0].cpu()
        entries[method] = ("method", order, rel)
    shared = tuple(b for b in options["baselines"] if b in SHARED_BASELINES)
    generator = _generator(options["seed"], index, "random")
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


def _localisation(
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


def _check_protocol(
    steps: int,
    batch_size: int,
    fractions: Sequence[float],
    baselines: Sequence[str],
    grid: int,
    draws: int,
) -> None:
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


def _protocol(given: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that pin the numbers (the table's notes, the JSON, and the runner's own
    options: substrates may be tensors here)."""

    return {
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


def _public(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options as reported: tensors (substrates given as tensors) by their shape."""
    return {
        k: f"tensor{tuple(v.shape)}" if isinstance(v, torch.Tensor) else v
        for k, v in options.items()
    }


def _input(lm: LoadedModel, source: Any) -> tuple[torch.Tensor, tuple[int, int] | None]:
    """The model input (1, C, H, W) on the model's device, and the original (width, height)."""
    if isinstance(source, torch.Tensor):
        x, _ = prepare_inputs(lm, source)
        return x.to(lm.device), None
    from ..images import load_image

    image = load_image(source)
    x, _ = prepare_inputs(lm, image)
    return x.to(lm.device), image.size


def _layer(
    lm: LoadedModel, methods: Sequence[str], layer: str | None, shape: tuple[int, ...]
) -> list[str] | None:
    if not any(get_method(m).needs_layer for m in methods):
        return None
    if layer is not None:
        return [layer]
    try:
        name = default_layer(lm.module, (1, *shape[1:]))
    except LayerError:
        return None
    log.info("using the default layer %s (the last with spatial output)", name)
    return [name]


def _faithfulness(
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
        rank = maps.ranks(order2d, _generator(seed, index, key, "order"))
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
                    seed=_seed(seed, index, key, "road"),
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


def _merge_draws(result: Evaluation, image: str) -> None:
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


def _notes(
    result: Evaluation, localisation: Sequence[str], wants_boxes: bool, boxes: Boxes | None
) -> None:
    target = result.protocol["target"]
    explained = "each image's top-1" if target == "top-1" else target
    result.notes.append(f"class explained: {explained}; score: its softmax probability")
    p = result.protocol
    parts = []
    if "deletion" in result.metrics:
        parts.append(f"deletion to {p['substrate']}")
    if "insertion" in result.metrics:
        parts.append(f"insertion from {p['insertion_substrate']} (blur: kernel 11, sigma 5)")
    if parts:
        result.notes.append(
            f"{', '.join(parts)}, {p['steps']} steps, AUC by the trapezoid rule; random = the "
            f"mean of {p['random_draws']} smooth random maps ({p['random_grid']}x"
            f"{p['random_grid']} upsampled)"
        )
    if localisation:
        counted = result.count(localisation[0])
        if counted == 0:
            message = (
                "no image had a box for its class, so localisation was skipped; give --boxes FILE "
                "(see cnnvis.evaluate.load_boxes for the format)"
            )
            if wants_boxes:
                raise EvaluationError(message)
            result.notes.append(message)
            result.metrics = [m for m in result.metrics if m not in localisation]
        else:
            result.notes.append(
                f"localisation on {counted} of {len(result.images)} image(s) with boxes from "
                f"{boxes.source if boxes else 'the boxes given'}; tolerance {result.protocol['tolerance']:g} px. "
                "Objects in photos are mostly centred, so the centre baseline is strong on the "
                "pointing game (TorchRay, VOC07: centre 69.6%, Grad-CAM 86.6%)"
            )
            for image in result.images:
                note = boxes.notes.get(image) if boxes else None
                if note:
                    result.notes.append(f"{image}: {note}")
    if result.failures:
        for method, error in result.failures.items():
            result.notes.append(f"{method} could not run: {error}")
