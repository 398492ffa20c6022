"""The public functions: classify, explain (one or several methods), sweep."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

import torch
from torch import nn

from .capture import Recording, check_finite_logits, record
from .errors import CnnvisError, Hint, ImageError, LayerError, MethodError, ParamError
from .explanation import Explanation, Prediction, Sweep
from .forwards import guarded_forward, no_autocast
from .layers import MAX_LAYERS, layers_for_unit, probe, requested_layers, sweep_layers
from .methods import MethodInfo, check_params, get_method
from .model import (
    LoadedModel,
    as_loaded,
    compute_model,
    half_precision,
    imagenet_categories,
    is_scripted,
    unwrap,
)
from .postprocess import upsample
from .progress import report, stage
from .targets import TargetSpec, UnitTarget, row_classes, row_names, select_logits

if TYPE_CHECKING:
    from .images import ImageSource

log = logging.getLogger(__name__)

ImageLike = Any  # path, "sample:NAME", PIL image, NumPy array, bytes, or a tensor


def prepare_inputs(
    model: LoadedModel, images: ImageLike, notes: list[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Model input (N, C, H, W) and the [0, 1] pictures it shows (N, 3, H, W).

    A tensor is taken as already-preprocessed model input ((C, H, W) or (N, C, H, W)); anything
    else is loaded as an image (or a list of them) and preprocessed with the model's transform.
    What loading noted (e.g. "only the first frame is used") is appended to `notes`.
    """
    if isinstance(images, torch.Tensor):
        x = images if images.dim() == 4 else images[None]
        _check_tensor(images, x)
        return x, _display_from_input(model, x)
    from .images import NOTES, load_image

    items = list(images) if isinstance(images, list | tuple) else [images]
    if not items:
        raise ImageError("no images given; pass an image, a list of images or a tensor")
    pictures = [load_image(item) for item in items]
    for picture in pictures:
        (notes if notes is not None else []).extend(picture.info.get(NOTES, []))
    display = torch.stack([model.preprocess.to_display(picture) for picture in pictures])
    return model.preprocess.normalize(display), display


def _check_tensor(images: torch.Tensor, x: torch.Tensor) -> None:
    """An ImageError unless `x` is a non-empty, finite, floating (N, C, H, W) input."""
    shape = tuple(images.shape)
    if x.dim() != 4:
        raise ImageError(f"a tensor input must be (C, H, W) or (N, C, H, W), got {shape}")
    if x.numel() == 0:
        raise ImageError(f"the input tensor {shape} is empty; pass at least one image")
    if not x.is_floating_point():
        raise ImageError(
            f"a tensor input must be preprocessed floating-point model input, got {x.dtype}; "
            "pass the image itself (path, PIL, array) or convert and normalize it first"
        )
    if not torch.isfinite(x).all():
        raise ImageError("the input tensor contains NaN or infinity; clean it first")


def _display_from_input(model: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().float()
    if x.shape[1] == 3:
        shown = model.preprocess.denormalize(x)
    else:
        shown = x.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    lo = shown.amin(dim=(1, 2, 3), keepdim=True)
    hi = shown.amax(dim=(1, 2, 3), keepdim=True)
    if x.shape[1] != 3 or lo.min() < 0 or hi.max() > 1:
        shown = (shown - lo) / (hi - lo).clamp(min=1e-12)
    return shown.cpu()


def _is_batched(images: ImageLike) -> bool:
    if isinstance(images, torch.Tensor):
        return images.dim() == 4
    return isinstance(images, list | tuple)


def _categories(model: LoadedModel, classes: int) -> list[str] | None:
    if model.categories is not None:
        return model.categories
    return imagenet_categories() if classes == 1000 else None


@overload
def classify(
    model: nn.Module | LoadedModel,
    images: list[Any] | tuple[Any, ...],
    top_k: int = 5,
    *,
    output: str | int | None = None,
) -> list[list[Prediction]]: ...


@overload
def classify(
    model: nn.Module | LoadedModel,
    images: ImageSource,
    top_k: int = 5,
    *,
    output: str | int | None = None,
) -> list[Prediction]: ...


@overload
def classify(
    model: nn.Module | LoadedModel,
    images: ImageLike,
    top_k: int = 5,
    *,
    output: str | int | None = None,
) -> list[Prediction] | list[list[Prediction]]: ...


def classify(
    model: nn.Module | LoadedModel,
    images: ImageLike,
    top_k: int = 5,
    *,
    output: str | int | None = None,
) -> list[Prediction] | list[list[Prediction]]:
    """Top-k classes with names and softmax probabilities: a list for one image, a list of
    lists for a batch (a list of images or an (N, C, H, W) tensor)."""
    lm = as_loaded(model)
    x, _ = prepare_inputs(lm, images)
    module = compute_model(lm.module)
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), x.dtype)
    with guarded_forward(module, grad=False):
        logits = select_logits(module(x.to(lm.device, dtype)), output)
    check_finite_logits(logits)
    result = top_predictions(logits, _categories(lm, logits.shape[1]), top_k)
    return result if _is_batched(images) else result[0]


def top_predictions(
    logits: torch.Tensor, categories: Sequence[str] | None, top_k: int
) -> list[list[Prediction]]:
    """The top-k (index, name, softmax probability) of each row of `logits`."""
    probs = logits.float().softmax(dim=1)
    values, indices = probs.topk(min(top_k, probs.shape[1]), dim=1)
    return [
        [
            Prediction(int(i), _name(categories, int(i)), float(p))
            for p, i in zip(row_p.tolist(), row_i.tolist(), strict=True)
        ]
        for row_p, row_i in zip(values, indices, strict=True)
    ]


def _name(categories: Sequence[str] | None, index: int) -> str:
    if categories is not None and 0 <= index < len(categories):
        return categories[index]
    return f"class {index}"


def explain_many(
    model: nn.Module | LoadedModel,
    images: ImageLike,
    methods: Sequence[str],
    layers: Sequence[str | None] | str | None = None,
    target: TargetSpec = None,
    *,
    output: str | int | None = None,
    failures: dict[str, CnnvisError] | None = None,
    top_k: int = 5,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[tuple[str, str | None], Explanation]:
    """Several methods x several layers from ONE recorded forward.

    Returns {(method, layer): Explanation}; pixel methods that need no layer get layer None.
    `layers=None` uses the default layer (the last with spatial output). With a `failures`
    dict, a method that cannot run on this model (e.g. CAM without a GAP head) is recorded
    there by name and the others go on; without one, its error is raised. `params` gives
    keyword arguments per method name, e.g. {"integrated-gradients": {"steps": 64}}.
    `output` picks the logits from a model that returns a dict, tuple or object (a key,
    attribute or index; see `cnnvis.targets.select_logits`).
    """
    lm = as_loaded(model)
    names = [methods] if isinstance(methods, str) else list(methods)
    infos = list({info.name: info for info in map(_method, names)}.values())
    if not infos:
        raise MethodError("no method given", hint=Hint("methods"))
    _check_params(params)
    if is_scripted(unwrap(lm.module)):
        infos = _without_layer_methods(infos, failures)
    notes: list[str] = []
    x, display = prepare_inputs(lm, images, notes)
    x = x.to(lm.device)
    needed = any(i.needs_layer for i in infos)
    unit_layer = target.layer if isinstance(target, UnitTarget) else None
    layer_names = requested_layers(
        lm.module, layers, needed=needed, input_shape=tuple(x.shape), unit_layer=unit_layer
    )
    half = half_precision(unwrap(lm.module))
    if half:
        notes.append(f"the model has {'/'.join(half)} weights; maps come from a float32 copy")
    start = time.perf_counter()
    rec = record(
        lm.module,
        x,
        layer_names,
        rules=any(r != "plain" for i in infos for r in i.input_rules),
        target=target,
        categories=lambda classes: _categories(lm, classes),
        output_key=output,
        normalize=lm.preprocess.normalize,
        load_image=lambda image: prepare_inputs(lm, image)[0].to(lm.device),
    )
    rec.prepare(
        input_rules=[r for i in infos for r in i.input_rules],
        layers=layer_names if any(i.layer_gradients for i in infos) else [],
        last=True,  # every method declares its rules and layers (MethodInfo)
    )
    if rec.unit is not None and any(i.layer_gradients for i in infos):
        _say_layers_blind_to_the_unit(rec, layer_names)
    common = {
        "images": display,
        "model": lm.name,
        "notes": notes,
        "random_weights": lm.random_weights,
        **_target_facts(rec, lm, top_k),
    }
    results: dict[tuple[str, str | None], Explanation] = {}
    todo = [(i, layer) for i in infos for layer in (layer_names if i.needs_layer else [None])]
    cautions = {i.name: i.caveat_notes(unwrap(lm.module)) for i in infos}
    for done, (info, layer) in enumerate(todo):
        report("maps", done, len(todo))
        cautioned = {**common, "notes": [*notes, *cautions[info.name]]}
        try:
            kwargs = dict((params or {}).get(info.name, {}))
            with stage(info.name if layer is None else f"{info.name} @ {layer}"):
                results[(info.name, layer)] = _one(rec, info, layer, cautioned, kwargs)
        except (MethodError, LayerError) as error:
            if failures is None:
                raise
            failures[info.name] = error
    report("maps", len(todo), len(todo))
    log.debug("explain_many: %d maps in %.3fs", len(results), time.perf_counter() - start)
    return results


def _target_facts(rec: Recording, lm: LoadedModel, top_k: int) -> dict[str, Any]:
    """What an Explanation says of its target: the class of each image (-1 where the target
    is not a class), its name (or the target as written), its probability, the predictions."""
    n = rec.inputs.shape[0]
    logits = rec.class_logits
    categories = None if logits is None else _categories(lm, logits.shape[1])
    predictions = None if logits is None else top_predictions(logits.detach(), categories, top_k)
    classes = row_classes(rec.target, n)
    written = row_names(rec.target, n)
    probs = [float("nan")] * n
    if logits is not None:
        softmax = logits.detach().float().softmax(dim=1)
        probs = [float("nan") if c is None else float(softmax[i, c]) for i, c in enumerate(classes)]
    return {
        "targets": [-1 if c is None else c for c in classes],
        "target_names": [
            w if c is None else _name(categories, c) for c, w in zip(classes, written, strict=True)
        ],
        "probabilities": probs,
        "predictions": predictions,
    }


def _method(name: Any) -> MethodInfo:
    if not isinstance(name, str):
        raise MethodError(
            f"a method name must be a string such as 'grad-cam', got {type(name).__name__} "
            f"{name!r}",
            hint=Hint("methods"),
        )
    return get_method(name)


def _say_layers_blind_to_the_unit(rec: Recording, layers: Sequence[str]) -> None:
    """A unit target's gradient is zero at a layer off the unit's path (a parallel branch that
    ran before it): the CAMs there are blank; say why and what works."""
    blind = [layer for layer in layers if not rec.layer_gradient(layer).any()]
    if blind and rec.unit is not None:
        log.warning(
            "the unit target %s does not depend on layer %s (the gradient there is zero for "
            "every image), so its CAM maps are blank; choose a layer on the path into %s",
            rec.unit,
            ", ".join(blind),
            rec.unit.layer,
        )


def _check_params(params: Mapping[str, Mapping[str, Any]] | None) -> None:
    """A ParamError for a parameter a method does not take, before any pass runs."""
    for name, values in (params or {}).items():
        if not isinstance(values, Mapping):
            raise ParamError(
                f"params[{name!r}] must map parameter names to values, e.g. "
                f"{{{name!r}: {{'steps': 64}}}}; got {type(values).__name__}"
            )
        check_params(_method(name), values)


def _without_layer_methods(
    infos: list[MethodInfo], failures: dict[str, CnnvisError] | None
) -> list[MethodInfo]:
    """For a TorchScript model: the methods that need no layer; the others are a MethodError
    (recorded in `failures` if given, when some method is left)."""
    for info in infos:
        if not info.needs_layer:
            continue
        error = MethodError(
            f"{info.name} cannot run on a TorchScript model: TorchScript runs outside Python, "
            "so no layer's activations can be recorded; explain the original (non-scripted) "
            "nn.Module",
            hint=Hint("methods", "torchscript"),
        )
        if failures is None or all(i.needs_layer for i in infos):
            raise error
        failures[info.name] = error
    return [info for info in infos if not info.needs_layer]


def _one(
    rec: Recording,
    info: MethodInfo,
    layer: str | None,
    common: dict[str, Any],
    kwargs: dict[str, Any],
) -> Explanation:
    extra: dict[str, Any] = {}
    try:
        with no_autocast(rec.inputs):  # maps in the model's precision, even under autocast
            raw = info.compute(rec, layer, **kwargs)
    except TypeError as error:
        if "unexpected keyword argument" not in str(error) and not kwargs:
            raise
        raise MethodError(
            f"{info.name}: {error} (parameters given: {kwargs}); check their names and types, "
            f"see cnnvis.get_method({info.name!r})"
        ) from None
    if isinstance(raw, tuple):  # (map, diagnostics such as IG's completeness error)
        raw, extra = raw
    raw = raw.detach()
    layer_map = None
    if info.kind == "cam":
        layer_map = raw
        if raw.dtype not in (torch.float32, torch.float64):  # fp16/bf16 maps: fp32
            raw = raw.float()
        raw = upsample(raw, (rec.inputs.shape[-2], rec.inputs.shape[-1]))
    if not torch.isfinite(raw).all():
        raise MethodError(
            f"{info.name} produced non-finite values (NaN or inf), so no map is drawn: the "
            "model's gradient is not finite at this input (e.g. sqrt or log at 0 in its "
            "forward); check the model, or use a method without gradients (occlusion, rise)"
        )
    return Explanation(
        method=info.name,
        map=raw,
        layer=layer,
        layer_map=layer_map,
        params={"layer": layer, **kwargs, **extra},
        **common,
    )


def explain(
    model: nn.Module | LoadedModel,
    images: ImageLike,
    method: str = "grad-cam",
    layer: str | None = None,
    target: TargetSpec = None,
    *,
    output: str | int | None = None,
    **params: Any,
) -> Explanation:
    """One method's maps for one image or a batch (see `explain_many` for several at once).

    A tensor is taken as preprocessed model input; paths, samples ("sample:cat"), PIL images
    and arrays are loaded and preprocessed with the model's transform. Extra keyword arguments
    are the method's parameters (e.g. `steps=64` for integrated gradients); explain_many's
    spelling `params={"integrated-gradients": {"steps": 64}}` is read too. A name the method
    does not take is a ParamError naming those it does.
    """
    info = _method(method)
    per_method: dict[str, Mapping[str, Any]] = {info.name: params}
    if "params" in params and "params" not in info.parameters:  # explain_many's spelling
        nested = params.pop("params")
        if not isinstance(nested, Mapping):
            raise ParamError(
                f"params must map method names to their parameters, e.g. "
                f"{{{info.name!r}: {{...}}}}; got {type(nested).__name__}"
            )
        per_method = {**nested, info.name: {**nested.get(info.name, {}), **params}}
    results = explain_many(model, images, [method], layer, target, output=output, params=per_method)
    return results[(info.name, _key_layer(results))]


def _key_layer(results: dict[tuple[str, str | None], Explanation]) -> str | None:
    return next(iter(results))[1]


def sweep(
    model: nn.Module | LoadedModel,
    images: ImageLike,
    method: str = "guided-grad-cam",
    layers: str | Sequence[str] = "all",
    target: TargetSpec = None,
    *,
    output: str | int | None = None,
    max_layers: int | None = MAX_LAYERS,
) -> Sweep:
    """The map of a layer method at every layer of `layers` ("all", a glob or a list), from one
    recorded forward: one backward to all layers at once, plus one per input rule.

    A glob names the matching layers a map is useful at (not Identity, dropout or a module
    repeating its enclosing one's output; see `cnnvis.layers.patterns`); "all" and globs keep
    at most `max_layers` (outermost levels first, logged; None: all of them)."""
    lm = as_loaded(model)
    info = _method(method)
    if not info.needs_layer:
        raise MethodError(f"{method} does not depend on a layer, so there is nothing to sweep")
    x, _ = prepare_inputs(lm, images)
    shape = (1, *x.shape[1:])
    names = sweep_layers(lm.module, layers, shape, max_layers)
    if isinstance(target, UnitTarget):  # layers after the unit cannot change it: left out
        names = layers_for_unit(lm.module, names, target.layer, shape)
    if unwrap(lm.module) is not lm.module:  # DataParallel: the wrapped module's names
        names = [name.removeprefix("module.") for name in names]
    infos = {i.name: i for i in probe(lm.module, shape) if i.name in names}
    shapes = {n: i.output_shape for n, i in infos.items() if i.output_shape is not None}
    spatial = [n for n in names if n in infos and infos[n].spatial]
    if not spatial:
        raise LayerError("none of the chosen layers has a spatial (N, C, H, W) or token output")
    results = explain_many(lm, images, [method], spatial, target, output=output)
    explanations = {layer: results[(info.name, layer)] for layer in spatial}
    return Sweep(
        method=info.name, explanations=explanations, shapes={n: shapes[n] for n in spatial}
    )
