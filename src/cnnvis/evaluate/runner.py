"""`evaluate`: every method and baseline on every image and metric, in shared batches."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ImageError, LayerError
from ..forwards import hooked
from ..layers import requested_layers
from ..methods import get_method
from ..model import LoadedModel, as_loaded
from ..targets import TargetSpec
from .baselines import BASELINES, REVERSED_PREFIX
from .cost import Cost, evaluation_cost, metric_passes
from .errors import EvaluationError
from .faithfulness import ROAD_NOISE, SubstrateSpec
from .image_maps import Entries, image_maps
from .image_scores import faithfulness_scores, localisation_scores, merge_random_draws
from .inputs import image_sources, model_input
from .localisation import TOLERANCE, Boxes, load_boxes
from .metrics import METRICS, RANDOMIZATION_MODES
from .progress import ProgressCallback, Tracker
from .protocol import (
    DEFAULT_PROTOCOL,
    check_protocol,
    get_protocol,
    protocol_options,
    reported_options,
    resolve_metrics,
    stable_seed,
)
from .result import Evaluation
from .sanity import model_randomization
from .sanity import randomization_groups as group_list
from .scoring import Scorer

log = logging.getLogger(__name__)


def evaluate(
    model: nn.Module | LoadedModel,
    images: Any = "sample:cat",
    methods: str | Sequence[str] = ("grad-cam",),
    metrics: str | Sequence[str] | None = None,
    *,
    protocol: str = DEFAULT_PROTOCOL,
    boxes: str | Path | Mapping[str, Any] | Boxes | None = None,
    layer: str | None = None,
    target: TargetSpec = None,
    output: str | None = None,
    steps: int | None = None,
    substrate: SubstrateSpec = "mean",
    insertion_substrate: SubstrateSpec = "blur",
    road_fractions: Sequence[float] | None = None,
    road_noise: float = ROAD_NOISE,
    baselines: Sequence[str] = BASELINES,
    random_grid: int = 7,
    random_draws: int | None = None,
    tolerance: float = TOLERANCE,
    randomization_groups: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    progress: ProgressCallback | None = None,
) -> Evaluation:
    """Evaluate methods on images: faithfulness, localisation and sanity checks, each method
    beside the baselines (smooth random, centred Gaussian, Sobel edges, and its own reversed
    order) and compared with each of them over the images (`Evaluation.comparisons`).

    `images`: a path, a folder (all its images), "sample:NAME", a PIL image, a list of these, or
    an (N, C, H, W) tensor of model inputs. `protocol`: "quick" (the default: one image in
    seconds; deletion/insertion in 6 steps, 2 random draws, ROAD only when named, at 3
    fractions) or "thorough" (100 steps, 8 draws, ROAD at 9 fractions, run by default);
    `steps`, `random_draws`, `road_fractions` given explicitly override it. `metrics`: names or
    groups (default: the protocol's; localisation only where `boxes` has the image; the
    bundled boxes cover the samples); "sanity", "cascading", "independent" add the
    randomization checks. `substrate` / `insertion_substrate`: "mean" (0 in the normalized
    input), "black", "blur" (kernel 11, sigma 5), a number or a tensor. Perturbed inputs go
    through the model `batch_size` at a time under inference mode; the user's model is not
    modified (randomization works on a copy). The same `seed` gives the same numbers.
    `progress(done, total, stage)` hears of the forward passes: first with done = 0 and the
    total planned from the protocol (see `cost`), last with done = total.
    """
    start_time = time.perf_counter()
    lm = as_loaded(model)
    names = [methods] if isinstance(methods, str) else list(methods)
    names = list(dict.fromkeys(get_method(m).name for m in names))
    if not names:
        raise EvaluationError("no method given")
    preset = get_protocol(protocol)
    steps = preset.steps if steps is None else steps
    random_draws = preset.random_draws if random_draws is None else random_draws
    road_fractions = preset.road_fractions if road_fractions is None else road_fractions
    chosen, wants_boxes = resolve_metrics(metrics, preset.metrics)
    check_protocol(steps, batch_size, road_fractions, baselines, random_grid, random_draws)
    options = protocol_options(locals())
    per_image = [m for m in chosen if m in METRICS]
    localisation = [m for m in per_image if METRICS[m].group == "localisation"]
    box_table = load_boxes(boxes) if localisation else None
    sources = image_sources(images)
    start, first, unreadable = _first_readable(lm, sources)
    layers, probed = _layer(lm, names, layer, tuple(first[0].shape))
    cost = _cost(lm, len(sources), names, chosen, options, probed)
    log.info("evaluating %d image(s), %s protocol: %s", len(sources), protocol, cost)
    tracker = Tracker(cost.total, progress)
    tracker.advance(probed)
    scorer = Scorer(lm, batch_size=batch_size, output=output, on_batch=tracker.advance)
    result = Evaluation(
        model=lm.name,
        methods=[],
        baselines=[],
        metrics=per_image + [m for m in chosen if m in RANDOMIZATION_MODES],
        images=[name for name, _ in sources],
        targets={},
        protocol=reported_options(options),
    )
    result.planned = cost.total
    for name, error in unreadable.items():
        _skip(result, name, error)
    for i, (name, source) in enumerate(sources):
        log.debug("evaluating %s (%d/%d)", name, i + 1, len(sources))
        if name in unreadable:
            continue
        tracker.begin(f"{name}: explain")
        try:
            x, size = first if i == start else model_input(lm, source)
        except ImageError as error:  # reported; the other images go on
            _skip(result, name, error)
            continue
        each = target[i] if isinstance(target, list | tuple) else target
        entries, t, ok = image_maps(result, lm, name, i, x, names, layers, each, params, options)
        tracker.advance(cost.explain)
        tracker.correct(_metric_passes(entries, per_image, options) - cost.metrics)
        tracker.begin(f"{name}: faithfulness")
        faithfulness_scores(result, scorer, lm, name, i, x[0], t, entries, per_image, options)
        if box_table is not None:
            mask = box_table.object_mask(name, t, lm.preprocess, size, (x.shape[-2], x.shape[-1]))
            localisation_scores(result, name, entries, mask, localisation, tolerance)
        merge_random_draws(result, name)
        for mode in (m for m in chosen if m in RANDOMIZATION_MODES):
            tracker.begin(f"{name}: {mode} randomization")
            result.randomization.append(
                model_randomization(
                    lm,
                    x,
                    ok,
                    mode=mode,
                    layer=layers[0] if layers else None,
                    target=t,
                    output=output,
                    seed=stable_seed(seed, i, mode),
                    groups=randomization_groups,
                    name=name,
                    on_step=lambda: tracker.advance(1),
                )
            )
    tracker.finish()
    result.methods = [m for m in names if m in result.methods]
    _notes(result, localisation, wants_boxes, box_table)
    result.forwards = scorer.forwards
    result.seconds = time.perf_counter() - start_time
    return result


def _cost(
    lm: LoadedModel,
    images: int,
    methods: Sequence[str],
    chosen: Sequence[str],
    options: Mapping[str, Any],
    probed: int,
) -> Cost:
    """The forward passes the run will make, from the protocol (see `cost`); `probed`: those
    already made to find the layer."""
    groups = 0
    if any(m in RANDOMIZATION_MODES for m in chosen):
        groups = len(group_list(lm.module))
        if options["randomization_groups"]:
            groups = min(groups, options["randomization_groups"])
    return evaluation_cost(
        images=images,
        methods=methods,
        metrics=chosen,
        baselines=options["baselines"],
        steps=options["steps"],
        random_draws=options["random_draws"],
        road_fractions=len(options["road_fractions"]),
        randomization_steps=groups,
        uncounted=[m for m in methods if get_method(m).cost.many_passes],
        layer_probe=probed,
    )


def _metric_passes(entries: Entries, metrics: Sequence[str], options: Mapping[str, Any]) -> int:
    """The metrics' forward passes for the maps this image really has (a method that could not
    run has none)."""
    orders = sum(key.startswith(REVERSED_PREFIX) for key in entries)
    maps = len(entries) - orders
    return metric_passes(maps, orders, metrics, options["steps"], len(options["road_fractions"]))


def _layer(
    lm: LoadedModel, methods: Sequence[str], layer: str | None, shape: tuple[int, ...]
) -> tuple[list[str] | None, int]:
    """The CAM layers, and the forward passes it took to find them (a probe forward on a blank
    input for "auto" or a pattern, once per model and input shape)."""
    needed = any(get_method(m).needs_layer for m in methods)
    rows: list[int] = []

    def count(module: nn.Module, args: Any, output: Any) -> None:
        rows.append(int(args[0].shape[0]) if args and hasattr(args[0], "shape") else 1)

    try:
        with hooked([(lm.module, count)]):
            found = requested_layers(lm.module, layer, needed=needed, input_shape=shape)
        return found or None, sum(rows)
    except LayerError:
        if layer not in (None, "auto"):
            raise  # a wrong name is the user's error; no spatial layer at all is the model's
        return None, sum(rows)


def _first_readable(
    lm: LoadedModel, sources: list[tuple[str, Any]]
) -> tuple[int, tuple[torch.Tensor, tuple[int, int] | None], dict[str, ImageError]]:
    """(index, model input) of the first image that can be read, and the errors of those
    before it; an ImageError when none can be read."""
    unreadable: dict[str, ImageError] = {}
    for i, (name, source) in enumerate(sources):
        try:
            return i, model_input(lm, source), unreadable
        except ImageError as error:
            unreadable[name] = error
    raise ImageError(
        f"none of the {len(sources)} images could be read ("
        + "; ".join(f"{name}: {error}" for name, error in unreadable.items())
        + "); pass image files (JPEG, PNG, ...)"
    )


def _skip(result: Evaluation, name: str, error: ImageError) -> None:
    """Report an image that could not be read and leave it out; the others go on."""
    log.warning("%s: skipped: %s", name, error)
    result.notes.append(f"{name}: skipped, it could not be read: {error}")
    result.images.remove(name)


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
