"""What a request may ask of the server: its origin, its model and its amount of work.

- Cross-site requests to the API are refused (403): a page on another site must not make this
  server build models or compute (`Sec-Fetch-Site` cross-site / same-site, or an `Origin` that
  is not this server's own). Requests without those headers (curl, scripts) are served.
- A request may choose only the served model or a model matching an `--allow-model` pattern;
  hub names (`timm:hf-hub:...`) never.
- Every work-sized method parameter has a server-side maximum (`WORK_LIMITS`); `params` JSON
  has a size and a nesting limit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from starlette.requests import Request

from ..errors import ModelError
from .forms import FormError

# Method parameters that set the amount of work, and their largest values by default.
WORK_LIMITS: dict[str, int] = {
    "steps": 256,  # integrated gradients
    "samples": 256,  # smoothgrad, gradient-shap
    "masks": 8000,  # rise
    "cells": 64,  # rise
    "batch_size": 256,  # score-cam, ablation-cam, rise, occlusion, ...
    "sweep_layers": 64,  # layers of one /api/sweep
    "top_k": 50,  # predictions of a request (the forms also stop at 50)
}
# Parameters with a smallest value instead: a smaller occlusion stride means more windows.
WORK_MINIMA: dict[str, int] = {"stride": 4}

PARAMS_MAX_CHARS = 4096
PARAMS_MAX_DEPTH = 4  # {"method": {"name": [1, 2]}} is 3 deep


class LimitError(FormError):
    """A request over one of the server's work limits (answered with 422)."""


def cross_site_reason(request: Request) -> str | None:
    """Why a request comes from another site, or None when it is same-origin or headerless."""
    fetch_site = request.headers.get("sec-fetch-site", "").lower()
    if fetch_site in ("cross-site", "same-site"):
        return f"the browser marks it as coming from another site (Sec-Fetch-Site: {fetch_site})"
    origin = request.headers.get("origin")
    if origin is not None:
        own = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
        if origin.strip().lower().rstrip("/") != own:
            return f"its Origin {origin!r} is not this server ({own})"
    return None


def is_hub_name(name: str) -> bool:
    return "hf-hub" in name.lower() or "hf_hub" in name.lower()


def model_allowed(name: str, served: str, patterns: Sequence[str]) -> bool:
    """Whether a request may choose model `name`: the served one, or one matching a pattern."""
    if name == served:
        return True
    if is_hub_name(name):
        return False
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def check_model_allowed(name: str, served: str, patterns: Sequence[str]) -> None:
    """Raise ModelError (before anything is built) for a model this server does not allow."""
    if is_hub_name(name):
        raise ModelError(
            f"{name!r} names a model hub; this server never loads hub models for a request"
        )
    if not model_allowed(name, served, patterns):
        allowed = ", ".join([served, *patterns])
        raise ModelError(
            f"model {name!r} is not allowed on this server; it allows: {allowed} "
            "(start it with --allow-model PATTERN to allow more)"
        )


def parse_params(text: str | None) -> dict[str, dict[str, Any]] | None:
    """Method parameters from JSON, within the size, depth and work limits."""
    if not text:
        return None
    if len(text) > PARAMS_MAX_CHARS:
        raise LimitError(
            f"params is {len(text):,} characters, over this server's limit of {PARAMS_MAX_CHARS:,}"
        )
    try:
        params = json.loads(text)
    except RecursionError:
        raise LimitError(f"params is nested too deeply (limit: {PARAMS_MAX_DEPTH})") from None
    except ValueError as error:
        raise FormError(
            f'params must be JSON such as {{"rise": {{"masks": 500}}}}: {error}'
        ) from None
    if _depth(params) > PARAMS_MAX_DEPTH:
        raise LimitError(f"params is nested too deeply (limit: {PARAMS_MAX_DEPTH})")
    if not isinstance(params, dict) or not all(isinstance(v, dict) for v in params.values()):
        raise FormError('params must map method names to objects, e.g. {"rise": {"masks": 500}}')
    return params


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def check_work(params: Mapping[str, Mapping[str, Any]] | None, limits: Mapping[str, int]) -> None:
    """Raise LimitError for a method parameter over (or, for a stride, under) its limit."""
    for method, values in (params or {}).items():
        for name, value in values.items():
            numbers = value if isinstance(value, list) else [value]
            numeric = [v for v in numbers if isinstance(v, int | float) and not isinstance(v, bool)]
            if name in WORK_MINIMA:
                smallest = limits.get(f"min_{name}", WORK_MINIMA[name])
                if any(v < smallest for v in numeric):
                    raise LimitError(
                        f"params.{method}.{name}: {value} is under this server's minimum of "
                        f"{smallest} (start it with --limit min_{name}=N to change it)"
                    )
            elif name in limits and any(v > limits[name] for v in numeric):
                raise LimitError(
                    f"params.{method}.{name}: {value} is over this server's limit of "
                    f"{limits[name]} (start it with --limit {name}=N to change it)"
                )


def check_count(name: str, count: int, limits: Mapping[str, int]) -> None:
    """Raise LimitError when `count` of `name` is over its limit."""
    limit = limits.get(name, WORK_LIMITS.get(name))
    if limit is not None and count > limit:
        raise LimitError(
            f"{name}: {count} is over this server's limit of {limit} "
            f"(start it with --limit {name}=N to change it)"
        )


def work_limits(overrides: Mapping[str, int] | None = None) -> dict[str, int]:
    """The default work limits with `overrides` (names of WORK_LIMITS, or min_stride)."""
    known = {*WORK_LIMITS, *(f"min_{n}" for n in WORK_MINIMA)}
    unknown = sorted(set(overrides or {}) - known)
    if unknown:
        raise ValueError(f"unknown work limit {unknown[0]!r}; known: {', '.join(sorted(known))}")
    return {
        **WORK_LIMITS,
        **{f"min_{n}": v for n, v in WORK_MINIMA.items()},
        **dict(overrides or {}),
    }
