"""`evaluate`: every method and baseline on every image and metric, in shared batches."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import ImageError, LayerError
from ..layers import requested_layers
from ..methods import get_method
from ..model import LoadedModel, as_loaded
from ..targets import TargetSpec
from .baselines import BASELINES, RANDOM_DRAWS
from .errors import EvaluationError
from .faithfulness import ROAD_FRACTIONS, ROAD_NOISE, SubstrateSpec
from .image_maps import image_maps
from .image_scores import faithfulness_scores, localisation_scores, merge_random_draws
from .inputs import image_sources, model_input
from .localisation import TOLERANCE, Boxes, load_boxes
from .metrics import METRICS, RANDOMIZATION_MODES
from .protocol import (
    check_protocol,
    protocol_options,
    reported_options,
    resolve_metrics,
    stable_seed,
)
from .result import Evaluation
from .sanity import model_randomization
from .scoring import Scorer

log = logging.getLogger(__name__)


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
    check_protocol(steps, batch_size, road_fractions, baselines, random_grid, random_draws)
    options = protocol_options(locals())
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
        protocol=reported_options(options),
    )
    layers: list[str] | None = None
    for i, (name, source) in enumerate(sources):
        log.info("evaluating %s (%d/%d)", name, i + 1, len(sources))
        try:
            x, size = model_input(lm, source)
        except ImageError as error:  # reported; the other images go on
            log.warning("%s: skipped: %s", name, error)
            result.notes.append(f"{name}: skipped, it could not be read: {error}")
            result.images.remove(name)
            continue
        if layers is None:
            layers = _layer(lm, names, layer, tuple(x.shape))
        each = target[i] if isinstance(target, list | tuple) else target
        entries, t, ok = image_maps(result, lm, name, i, x, names, layers, each, params, options)
        faithfulness_scores(result, scorer, lm, name, i, x[0], t, entries, per_image, options)
        if box_table is not None:
            mask = box_table.object_mask(name, t, lm.preprocess, size, (x.shape[-2], x.shape[-1]))
            localisation_scores(result, name, entries, mask, localisation, tolerance)
        merge_random_draws(result, name)
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
                    seed=stable_seed(seed, i, mode),
                    groups=randomization_groups,
                    name=name,
                )
            )
    if not result.images:
        raise ImageError(
            f"none of the {len(sources)} images could be read ({'; '.join(result.notes)}); "
            "pass image files (JPEG, PNG, ...)"
        )
    result.methods = [m for m in names if m in result.methods]
    _notes(result, localisation, wants_boxes, box_table)
    result.forwards = scorer.forwards
    result.seconds = time.perf_counter() - start_time
    return result


def _layer(
    lm: LoadedModel, methods: Sequence[str], layer: str | None, shape: tuple[int, ...]
) -> list[str] | None:
    needed = any(get_method(m).needs_layer for m in methods)
    try:
        return requested_layers(lm.module, layer, needed=needed, input_shape=shape) or None
    except LayerError:
        if layer not in (None, "auto"):
            raise  # a wrong name is the user's error; no spatial layer at all is the model's
        return None


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
