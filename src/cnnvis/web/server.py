"""The server's state, shared by the app and its routes: the settings (`ServerConfig`) and the
`Server` that holds the model cache, the results and the worker threads."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from ..errors import ModelError
from ..forwards import WorkStopped, stop_signal
from ..model import LoadedModel
from ..progress import reporting
from .guards import check_model_allowed, model_allowed, work_limits
from .state import ModelCache, ProgressBoard, ResultStore

MB = 1_000_000
T = TypeVar("T")
POLL_SECONDS = 0.2  # how often a waiting request checks its client and its time limit


class ServerBusy(Exception):
    """Too many request bodies are held in memory already (answered with 503, Retry-After)."""

    def __init__(self, pending: int, limit: int) -> None:
        super().__init__(
            f"the server is busy: {pending / MB:.0f} MB of requests are being read or waiting "
            f"for a worker (limit {limit / MB:g} MB); try again in a moment (or start the "
            "server with a larger --max-pending-mb)"
        )


@dataclass(frozen=True)
class ServerConfig:
    """How a server is set up; see `create_app` for the meaning of each field."""

    model_name: str = "default"
    weights: str | None = "DEFAULT"
    device: str | None = None
    output: str | None = None
    max_upload_bytes: int = 20 * MB
    max_pending_bytes: int = 100 * MB  # request bodies held at once, reading or queued (503)
    max_pixels: int = 50_000_000
    cache_size: int = 2
    max_results: int = 16
    workers: int = 2
    work_timeout_s: float = 300.0  # model work of one request stops after this (503)
    body_timeout_s: float = 60.0  # a request body must arrive within this time (408)
    allow_models: tuple[str, ...] = ()  # fnmatch patterns of models a request may choose
    limits: dict[str, int] = field(default_factory=work_limits)  # see guards.WORK_LIMITS


class Server:
    """The app's state: its settings, the model cache, the results and the worker threads."""

    def __init__(self, config: ServerConfig, model: LoadedModel | None = None) -> None:
        if model is not None:
            config = replace(config, model_name=model.name)
        self.config = config
        pinned = {(config.model_name, config.weights): model} if model is not None else None
        self.models = ModelCache(self._load, config.cache_size, pinned)
        self.results = ResultStore(config.max_results)
        self._executor: ThreadPoolExecutor | None = None
        self._pending_bytes = 0  # bodies being read or waiting for a worker (event loop only)
        self.progress = ProgressBoard()

    @property
    def served(self) -> str:
        """The name of the model the server was started with."""
        return self.config.model_name

    def _load(self, name: str, weights: str | None) -> LoadedModel:
        from ..zoo import load_model

        return load_model(name, weights=weights, device=self.config.device)

    def model_key(self, name: str | None) -> tuple[str, str | None]:
        """(name, weights) for a requested model; model files only if the server was given one."""
        name = (name or "").strip() or self.served
        if name == self.served:
            return name, self.config.weights
        if _looks_like_file(name):
            raise ModelError(
                f"{name!r} names a model file; this server only loads files named when it was "
                f"started (cnnvis serve --model FILE); choose a model from /api/models"
            )
        _check_name(name)
        check_model_allowed(name, self.served, self.config.allow_models)
        return name, "DEFAULT"

    def allows(self, name: str) -> bool:
        """Whether a request may choose model `name`."""
        return model_allowed(name, self.served, self.config.allow_models)

    def model(self, name: str | None) -> LoadedModel:
        """A requested model (the served one if `name` is empty), loaded or from the cache."""
        return self.models.get(*self.model_key(name))

    @contextlib.asynccontextmanager
    async def holding_body(self, size: int) -> AsyncIterator[None]:
        """Count a request's body (`size` bytes at most) as held in memory inside the block,
        from its first byte read until its work is done; refuse it (`ServerBusy`) when that
        would pass `max_pending_bytes`, so queued uploads cannot fill the memory."""
        limit = self.config.max_pending_bytes
        if self._pending_bytes and self._pending_bytes + size > limit:
            raise ServerBusy(self._pending_bytes, limit)
        self._pending_bytes += size
        try:
            yield
        finally:
            self._pending_bytes -= size

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """Run model work on the worker threads; requests beyond `workers` wait their turn."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=max(1, self.config.workers), thread_name_prefix="cnnvis-web"
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(work, *args))

    async def run_stoppable(
        self,
        disconnected: Callable[[], Any],
        work: Callable[..., T],
        *args: Any,
        progress_id: str | None = None,
    ) -> T:
        """`run`, stopping the work (before its next forward, `forwards.stop_signal`) when
        `await disconnected()` says the client went away or after `work_timeout_s`; raises
        WorkStopped then. With `progress_id`, the work's progress is kept on `self.progress`
        for GET /api/progress/{progress_id}."""
        stop = threading.Event()
        listen = self.progress.listener(progress_id) if progress_id else None

        def stoppable() -> T:
            try:
                with stop_signal(stop), reporting(listen):  # raises at once if stopped queued
                    return work(*args)
            finally:
                if progress_id:
                    self.progress.finish(progress_id)

        task = asyncio.ensure_future(self.run(stoppable))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.work_timeout_s
        why = None
        while why is None:
            done, _ = await asyncio.wait({task}, timeout=POLL_SECONDS)
            if done:
                return task.result()
            if await disconnected():
                why = "the client went away"
            elif loop.time() > deadline:
                why = f"the work took longer than this server's {self.config.work_timeout_s:g} s"
        stop.set()
        with contextlib.suppress(WorkStopped):
            await task
        raise WorkStopped(why)

    def close(self) -> None:
        """Stop the worker threads (queued work is cancelled)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _looks_like_file(name: str) -> bool:
    """Whether a requested model name points at a file rather than a registry name."""
    from ..zoo.names import MODEL_FILE_SUFFIXES

    return (
        "/" in name
        or "\\" in name
        or name.startswith(("~", "."))
        or name.lower().endswith(MODEL_FILE_SUFFIXES)
        or os.path.exists(name)
    )


def _check_name(name: str) -> None:
    """Raise ModelError (with suggestions) for an unknown model name, without building it."""
    from ..zoo.names import parse_name
    from ..zoo.timm_loader import check_timm_arch
    from ..zoo.torchvision_loader import torchvision_arch

    source, arch = parse_name(name)
    if source == "torchvision":
        torchvision_arch(arch)
    elif source == "timm" and "hf-hub" not in arch and "hf_hub" not in arch:
        check_timm_arch(arch)
