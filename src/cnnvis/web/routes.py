"""The JSON API: /api/models, methods, samples, colormaps, layers, classify, explain, sweep,
and the downloads of a result (figure PNG, maps NPZ, manifest JSON)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Query, Request
from PIL import Image

from ..errors import CnnvisError, MethodError, TargetError
from ..explanation import Explanation, Sweep
from ..model import LoadedModel
from . import views
from .forms import (
    ClassifyForm,
    ExplainForm,
    F,
    SweepForm,
    Upload,
    body_size,
    read_form,
    request_body,
)
from .guards import check_count, check_work, parse_params
from .schemas import (
    ClassifyOut,
    ColormapsOut,
    ErrorOut,
    ExplainOut,
    LayersOut,
    LimitsOut,
    MethodOut,
    ModelsOut,
    SamplesOut,
    SweepOut,
)
from .server import Server
from .state import Result

ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorOut, "description": "the upload is over the size limit"},
    422: {
        "model": ErrorOut,
        "description": "not an image, too many pixels, or an unknown "
        "model, method, layer or target",
    },
}
router = APIRouter(prefix="/api", responses={422: ERRORS[422]})


def _server(request: Request) -> Server:
    return request.app.state.cnnvis


# listings


@router.get("/models", response_model=ModelsOut, summary="The models this server can use")
def models(request: Request) -> dict[str, Any]:
    """The served model, the offline default, models with weights on this machine, and the
    models loaded now. Other torchvision/timm names work too (their weights may download)."""
    from ..zoo import available_models

    server = _server(request)
    loaded = {name for name, _ in server.models.loaded()}
    entries: dict[str, dict[str, Any]] = {
        server.served: {
            "name": server.served,
            "weights": server.config.weights,
            "served": True,
            "local": True,
        }
    }
    for entry in available_models():
        if entry["name"] in entries or not server.allows(entry["name"]):
            continue
        if entry["source"] == "default" or entry["local"]:
            entries[entry["name"]] = {**entry, "served": False}
    for name in loaded - set(entries):
        entries[name] = {"name": name, "weights": "DEFAULT", "served": False, "local": True}
    rows = [{**e, "loaded": e["name"] in loaded} for e in entries.values()]
    return {"default": server.served, "cache_size": server.models.size, "models": rows}


@router.get("/methods", response_model=list[MethodOut], summary="Every method, with its cost")
def methods() -> list[dict[str, Any]]:
    from ..methods import list_methods

    return [m.to_row() for m in list_methods()]


@router.get("/samples", response_model=SamplesOut, summary="The bundled sample images")
def samples() -> dict[str, Any]:
    from ..images import list_samples

    names = sorted(list_samples())
    return {"default": "cat" if "cat" in names else None, "samples": names}


@router.get("/progress/{progress_id}", summary="How far a request's work is")
def progress(request: Request, progress_id: str) -> dict[str, Any]:
    """{state: queued | running | done | unknown, stage, done, total} of the request that sent
    this `progress_id` (the page polls it while it waits)."""
    return _server(request).progress.get(progress_id[:64])


@router.get("/limits", response_model=LimitsOut, summary="This server's limits")
def limits(request: Request) -> dict[str, Any]:
    config = _server(request).config
    return {
        "max_upload_bytes": config.max_upload_bytes,
        "max_pending_bytes": config.max_pending_bytes,
        "max_pixels": config.max_pixels,
        "workers": config.workers,
        "cache_size": config.cache_size,
        "max_results": config.max_results,
        "work": dict(config.limits),
        "allow_models": [config.model_name, *config.allow_models],
    }


@router.get("/colormaps", response_model=ColormapsOut, summary="Colormaps for the page")
def colormaps() -> dict[str, Any]:
    return {
        "default": views.DEFAULT_COLORMAP,
        "colormaps": views.colormap_tables(),
        "signed": views.colormap_tables((views.SIGNED_COLORMAP,))[views.SIGNED_COLORMAP],
    }


@router.get("/layers", response_model=LayersOut, summary="A model's layers, the default marked")
async def layers(
    request: Request,
    model: str | None = Query(None, description="model name; empty: the server's model"),
) -> dict[str, Any]:
    server = _server(request)
    return await server.run(_layers, server, model)


def _layers(server: Server, name: str | None) -> dict[str, Any]:
    from ..layers import list_layers

    lm = server.model(name)
    size = lm.preprocess.crop_size
    infos = list_layers(lm.module, (1, 3, size, size))
    rows = [
        {**asdict(i), "output_shape": _shape(i.output_shape), "spatial": i.spatial}
        for i in infos
        if i.output_shape is not None
    ]
    default = next((i.name for i in infos if i.default), None)
    return {"model": lm.name, "input_size": size, "default": default, "layers": rows}


def _shape(shape: tuple[int, ...] | None) -> list[int] | None:
    return None if shape is None else [int(d) for d in shape]


# the work


async def _answer(
    request: Request, form_type: type[F], work: Callable[[Server, F, Upload | None], dict[str, Any]]
) -> dict[str, Any]:
    """Read a work route's form (and upload), then run `work` on the server's model workers."""
    server = _server(request)
    config = server.config
    async with server.holding_body(body_size(request, config.max_upload_bytes)):
        form, upload = await read_form(
            request, form_type, config.max_upload_bytes, config.body_timeout_s
        )
        check_count("top_k", getattr(form, "top_k", 0), server.config.limits)
        return await server.run_stoppable(
            request.is_disconnected,
            work,
            server,
            form,
            upload,
            progress_id=getattr(form, "progress_id", None),
        )


@router.post(
    "/classify",
    response_model=ClassifyOut,
    summary="Top-k classes of an image",
    responses=ERRORS,
    openapi_extra=request_body(ClassifyForm),
)
async def classify(request: Request) -> dict[str, Any]:
    return await _answer(request, ClassifyForm, _classify)


def _classify(server: Server, form: ClassifyForm, upload: Upload | None) -> dict[str, Any]:
    from ..api import classify as classify_image

    start = time.perf_counter()
    source, image = _image(server, form.sample, upload)
    lm = server.model(form.model)
    found = classify_image(lm, image, form.top_k, output=server.config.output)
    return {
        "model": lm.name,
        "source": source,
        "image_size": list(image.size),
        "input": views.picture(lm.preprocess.to_display(image)),
        "predictions": views.predictions(found),
        "seconds": time.perf_counter() - start,
    }


@router.post(
    "/explain",
    response_model=ExplainOut,
    summary="Maps of one or several methods for one image",
    responses=ERRORS,
    openapi_extra=request_body(ExplainForm),
)
async def explain(request: Request) -> dict[str, Any]:
    """All methods share one recorded forward. A method that cannot run on this model (CAM
    without a global-average-pool head) is listed in `skipped`; the others still run."""
    return await _answer(request, ExplainForm, _explain)


def _explain(server: Server, form: ExplainForm, upload: Upload | None) -> dict[str, Any]:
    from ..api import explain_many

    start = time.perf_counter()
    names = _method_names(form.methods)
    params = parse_params(form.params)
    check_work(params, server.config.limits)
    target = _web_target(form.target)
    layer = form.layer  # "auto" or a name: read by cnnvis.layers.requested_layers
    source, image = _image(server, form.sample, upload)
    lm = server.model(form.model)
    failures: dict[str, CnnvisError] = {}
    found = explain_many(
        lm,
        image,
        names,
        layer,
        target,
        output=server.config.output,
        failures=failures,
        top_k=form.top_k,
        params=params,
    )
    if not found:
        raise next(iter(failures.values()))
    explanations = list(found.values())
    skipped = [{"method": m, "detail": str(e)} for m, e in failures.items()]
    layers = sorted({e.layer for e in explanations if e.layer})
    facts = _facts(server, lm, source, image, form.target, start)
    facts.update(layer=", ".join(layers) or None, skipped=skipped)
    result = server.results.add(Result("explain", explanations, facts))
    maps = []
    for e in explanations:
        values, blank, signed = views.display_values(e)
        maps.append(
            {
                "method": e.method,
                "kind": e.kind,
                "layer": e.layer,
                "title": views.title(e),
                "values": values,
                "display": views.display_note(e),
                "blank": blank,
                "signed": signed,
            }
        )
    return {
        **_common(result, explanations[0], facts),
        "maps": maps,
        "skipped": skipped,
        "seconds": time.perf_counter() - start,
    }


@router.post(
    "/sweep",
    response_model=SweepOut,
    summary="One layer method at every layer of the main path",
    responses=ERRORS,
    openapi_extra=request_body(SweepForm),
)
async def sweep(request: Request) -> dict[str, Any]:
    """One recorded forward and one backward to all layers at once (plus one per input rule
    for guided Grad-CAM)."""
    return await _answer(request, SweepForm, _sweep)


def _web_target(text: str | None) -> Any:
    """The form's target, read as everywhere (`parse_target`); a similarity to an image named by
    a path is refused: the page sends images, it never names files on the server's disk."""
    from ..targets import Similarity, parse_target

    target = parse_target(text)
    if isinstance(target, Similarity):
        raise TargetError(
            "the web page cannot compare with an image by its path on the server; use the "
            "library or the command line for similar:IMAGE targets"
        )
    return target


def _sweep(server: Server, form: SweepForm, upload: Upload | None) -> dict[str, Any]:
    from ..api import sweep as sweep_layers
    from ..layers import sweep_layers as layers_of_sweep

    start = time.perf_counter()
    method = _method_names(form.method)[0]
    target = _web_target(form.target)
    requested = form.layers or "all"
    spec: str | list[str] = requested
    if "," in requested:
        spec = [s.strip() for s in requested.split(",") if s.strip()]
    source, image = _image(server, form.sample, upload)
    lm = server.model(form.model)
    size = lm.preprocess.crop_size
    names = layers_of_sweep(lm.module, spec, (1, 3, size, size))
    check_count("sweep_layers", len(names), server.config.limits)
    result_sweep: Sweep = sweep_layers(lm, image, method, spec, target, output=server.config.output)
    explanations = list(result_sweep.explanations.values())
    facts = _facts(server, lm, source, image, form.target, start)
    result = server.results.add(Result("sweep", explanations, facts, sweep=result_sweep))
    rows = []
    for name, e in result_sweep.explanations.items():
        values, blank, _ = views.display_values(e)
        shape = _shape(result_sweep.shapes.get(name)) or []
        rows.append({"name": name, "output_shape": shape, "values": values, "blank": blank})
    return {
        **_common(result, explanations[0], facts),
        "method": result_sweep.method,
        "display": views.display_note(explanations[0]),
        "layers": rows,
        "seconds": time.perf_counter() - start,
    }


# helpers of the work routes


def _method_names(spec: str) -> list[str]:
    from ..methods import get_method

    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise MethodError("no method given; name one or more, e.g. grad-cam (see /api/methods)")
    return [get_method(name).name for name in dict.fromkeys(names)]


def _image(server: Server, sample: str | None, upload: Upload | None) -> tuple[str, Image.Image]:
    """(source label, RGB image) from the upload or the sample; never a path on this machine."""
    from ..errors import ImageError
    from ..images import load_image

    if upload is not None and sample:
        raise ImageError("give either an image file or a sample, not both")
    if upload is not None:
        try:
            image = load_image(upload.data, max_pixels=server.config.max_pixels)
        except ImageError as error:
            named = f"the uploaded file {upload.filename!r}"
            message = error.message.replace(
                "the image bytes are empty", "the uploaded file is empty"
            )
            message = message.replace("the image bytes are", f"{named} is")
            message = message.replace("the image bytes", named)
            raise ImageError(message, hint=error.hint) from None
        return upload.filename, image
    if sample:
        name = sample.removeprefix("sample:")
        return f"sample:{name}", load_image(f"sample:{name}")
    raise ImageError(
        "no image: upload a file in the 'image' field, or name a sample in 'sample' "
        "(see /api/samples)"
    )


def _facts(
    server: Server,
    lm: LoadedModel,
    source: str,
    image: Image.Image,
    target: str | None,
    start: float,
) -> dict[str, Any]:
    return {
        "source": source,
        "image_size": list(image.size),
        "model": lm.name,
        "weights": lm.weights,
        "device": str(lm.device),
        "input_size": lm.preprocess.crop_size,
        "target": target or "top1",
        "seconds": time.perf_counter() - start,
    }


def _common(result: Result, first: Explanation, facts: dict[str, Any]) -> dict[str, Any]:
    base = f"/api/results/{result.id}"
    return {
        "id": result.id,
        "model": facts["model"],
        "source": facts["source"],
        "image_size": facts["image_size"],
        "input": views.picture(first.images[0]),
        "target": {
            "requested": facts["target"],
            "index": first.targets[0],
            "name": first.target_names[0],
            "probability": _finite(first.probabilities[0]),
        },
        "predictions": views.predictions((first.predictions or [[]])[0]),
        "notes": list(first.notes),
        "downloads": {
            "figure": f"{base}/figure.png",
            "maps": f"{base}/maps.npz",
            "manifest": f"{base}/manifest.json",
        },
    }


def _finite(value: float) -> float | None:
    return value if value == value and abs(value) != float("inf") else None


__all__ = ["router"]
