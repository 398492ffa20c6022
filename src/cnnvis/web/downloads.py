"""The downloads of a result the server keeps: its figure (PNG), raw maps (NPZ) and manifest."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from . import views
from .schemas import ErrorOut
from .server import Server
from .state import Result

router = APIRouter(prefix="/api")


def _server(request: Request) -> Server:
    server: Server = request.app.state.cnnvis
    return server


def _result(request: Request, result_id: str) -> Result:
    server = _server(request)
    result = server.results.get(result_id)
    if result is None:
        raise HTTPException(
            404,
            f"no result {result_id!r} here: the server keeps the last {server.results.size} "
            "results (and none across restarts); explain the image again",
        )
    return result


def _filename(result: Result, suffix: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", result.facts["source"].split(":")[-1])
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    return f"cnnvis-{stem or 'image'}-{result.kind}{suffix}"


def _download(content: bytes, media_type: str, filename: str) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(content, media_type=media_type, headers=headers)


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such result (only recent ones are kept)"}
}


@router.get(
    "/results/{result_id}/figure.png",
    summary="The figure of a result, as PNG",
    responses={**NOT_FOUND, 200: {"content": {"image/png": {}}}},
    response_class=Response,
)
async def figure(
    request: Request,
    result_id: str,
    cmap: str = Query(views.DEFAULT_COLORMAP, description="a matplotlib colormap"),
    alpha: float = Query(0.5, ge=0.0, le=1.0, description="opacity of the map over the image"),
) -> Response:
    result = _result(request, result_id)
    from ..render import colormap

    colormap(cmap)  # an unknown name is a 422 with suggestions
    png = await _server(request).run(views.figure_png, result, cmap, alpha)
    return _download(png, "image/png", _filename(result, ".png"))


@router.get(
    "/results/{result_id}/maps.npz",
    summary="The raw, signed maps of a result, as NPZ",
    responses={**NOT_FOUND, 200: {"content": {"application/octet-stream": {}}}},
    response_class=Response,
)
async def maps(request: Request, result_id: str) -> Response:
    result = _result(request, result_id)
    data = await _server(request).run(views.maps_npz, result)
    return _download(data, "application/octet-stream", _filename(result, ".npz"))


@router.get(
    "/results/{result_id}/manifest.json",
    summary="What was run, on what, and the result",
    responses={**NOT_FOUND, 200: {"content": {"application/json": {}}}},
    response_class=Response,
)
async def manifest(request: Request, result_id: str) -> Response:
    result = _result(request, result_id)
    return _download(views.manifest_json(result), "application/json", _filename(result, ".json"))


__all__ = ["router"]
