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
