"""What the server keeps between requests: a small LRU of loaded models and one of results."""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..explanation import Explanation, Sweep
from ..model import LoadedModel

log = logging.getLogger(__name__)

ModelKey = tuple[str, str | None]  # (name, weights)


class ModelCache:
    """Models loaded on first use and kept in a least-recently-used cache of `size` entries.

    Concurrent requests for a model that is not loaded yet wait for one load (a lock per key);
    a failed load (unknown name, missing weights) is not cached and raises in every request.
    `pinned` models (given to `create_app` as objects) are never evicted.
    """

    def __init__(
        self,
        load: Callable[[str, str | None], LoadedModel],
        size: int,
        pinned: dict[ModelKey, LoadedModel] | None = None,
    ) -> None:
        self._load = load
        self.size = max(1, size)
        self._pinned = dict(pinned or {})
        self._models: OrderedDict[ModelKey, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[ModelKey, threading.Lock] = {}

    def get(self, name: str, weights: str | None) -> LoadedModel:
        key = (name, weights)
        if key in self._pinned:
            return self._pinned[key]
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                if key in self._models:
                    self._models.move_to_end(key)
                    return self._models[key]
            log.info("loading model %s (weights: %s)", name, weights)
            try:
                model = self._load(name, weights)
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            with self._lock:
                self._models[key] = model
                while len(self._models) > self.size:
                    evicted, _ = self._models.popitem(last=False)
                    log.info("unloading model %s (the cache holds %d)", evicted[0], self.size)
        return model

    def loaded(self) -> list[ModelKey]:
        with self._lock:
            return [*self._pinned, *self._models]


@dataclass
class Result:
    """One explain or sweep answer, kept so that its figure, maps and manifest can be downloaded."""

    kind: str  # "explain" | "sweep"
    explanations: list[Explanation]
    facts: dict[str, Any]
    sweep: Sweep | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


class ResultStore:
    """The last `size` results by id (least recently used dropped first); thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._results: OrderedDict[str, Result] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, result: Result) -> Result:
        with self._lock:
            self._results[result.id] = result
            while len(self._results) > self.size:
                self._results.popitem(last=False)
        return result

    def get(self, result_id: str) -> Result | None:
        with self._lock:
            result = self._results.get(result_id)
            if result is not None:
                self._results.move_to_end(result_id)
            return result

    def __len__(self) -> int:
        with self._lock:
            return len(self._results)


class ProgressBoard:
    """How far the work of each request that named a `progress_id` is: its stage and done /
    total, "queued" before a worker starts it, "done" after; the last `size` ids are kept."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._board: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def _put(self, key: str, entry: dict[str, Any]) -> None:
        with self._lock:
            self._board[key] = entry
            self._board.move_to_end(key)
            while len(self._board) > self.size:
                self._board.popitem(last=False)

    def listener(self, key: str) -> Callable[[str, int, int], None]:
        """A `cnnvis.progress` callback that records on the board under `key`."""
        self._put(key, {"state": "queued", "stage": "", "done": 0, "total": 0})

        def heard(stage: str, done: int, total: int) -> None:
            self._put(key, {"state": "running", "stage": stage, "done": done, "total": total})

        return heard

    def finish(self, key: str) -> None:
        with self._lock:
            entry = self._board.get(key)
        if entry is not None:
            self._put(key, {**entry, "state": "done"})

    def get(self, key: str) -> dict[str, Any]:
        """The progress of `key`: {"state": "unknown"} for an id never seen (or forgotten)."""
        with self._lock:
            entry = self._board.get(key)
        return (
            dict(entry)
            if entry is not None
            else {"state": "unknown", "stage": "", "done": 0, "total": 0}
        )
