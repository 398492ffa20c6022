"""Model-holding Ray actors that outlive one batch run, and the Ray Data task that feeds them.

Ray Data starts the actors of an `ActorPoolStrategy` for every execution and stops them at its
end, so each job would pay a new process importing torch and torchvision (2-3 s on a small
machine) and receive the model again; Ray has no persistent actor pool for Ray Data yet
(ray-project/ray#46479). cnnvis keeps its own: `ModelActor`s, each holding one copy of the model
(and one GPU with `gpus`), live as long as the driver's Ray session, and the next job with the
same model (weights, preprocessing, class names: `model_identity`) and resources reuses them. A Ray Data map task (`forwarder`,
no CPU of its own) hands each block of batches to one of them and returns their columns.

Only one pool is kept: a job with another model or other resources stops the old actors first,
so they do not hold the cluster's CPUs or GPUs, and so does a job with `keep_actors=False`
(which starts actors of its own that end with it). `release_actors()` stops them at once; they
also end with the driver (they are not detached) and with `ray.shutdown()`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import json
import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .dataset import OK, decode_batch

_lock = threading.Lock()
_kept: tuple[PoolKey, list[Any]] | None = None


@dataclass(frozen=True)
class PoolKey:
    """What must match for a kept pool to serve a job."""

    session: tuple[str, str]  # (node id, job id) of the driver: a new ray.init is a new one
    model: str  # model_identity: everything of the model that the actors use
    actors: int
    gpus: float
    cpus: float
    threads: int
    device: str


def model_identity(model: Any, fingerprint: str) -> str:
    """sha256 of what an actor holds besides the job: the weights (`fingerprint`, from
    batch.job.model_fingerprint), the name, the preprocessing (its normalization is applied in
    the actor) and the class names (the predictions' names)."""
    text = json.dumps(
        [fingerprint, model.name, repr(model.preprocess), model.categories], default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()


class ModelActor:
    """One copy of the model on `device`; explains the batches that `forward` hands it."""

    def __init__(self, model: Any, device: str, threads: int):
        import ray
        import torch

        if isinstance(model, ray.ObjectRef):
            model = ray.get(model)
        torch.set_num_threads(max(1, threads))
        self.model = model.to(device)

    def pid(self) -> int:
        return os.getpid()

    def explain(
        self, batch: dict[str, np.ndarray], job: Any, decoding: dict[str, Any] | None
    ) -> dict[str, np.ndarray]:
        """The batch's columns plus predictions, statistics and maps of its decodable rows.

        `decoding`: read and decode the files here (CPU actors: a separate decoding task would
        only compete with the actor's torch threads for the same cores); None when they come
        decoded (GPU actors, decoded by CPU tasks).
        """
        import torch

        from .compute import explain_columns

        if decoding is not None:
            batch = decode_batch(batch, **decoding)
        ok = np.array([s == OK for s in batch["status"]], dtype=bool)
        out = {k: v for k, v in batch.items() if k != "pixels" or job.png}
        if ok.any():
            pixels = torch.from_numpy(np.ascontiguousarray(batch["pixels"][ok]))
            columns = explain_columns(self.model, pixels, batch["label_index"][ok], job)
            out.update({name: _expand(column, ok) for name, column in columns.items()})
        return out


def _expand(column: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """A column of the ok rows as a column of all rows (others: 0 or ''; None as '')."""
    if column.dtype == object:
        full = np.full(len(ok), "", dtype=object)
        full[ok] = ["" if v is None else v for v in column]
        return full
    full = np.zeros((len(ok), *column.shape[1:]), dtype=column.dtype)
    full[ok] = column
    return full


def forwarder(actors: list[Any], batch_size: int, per_block: int, job: Any, decoding: Any) -> Any:
    """The Ray Data task function: block b (`per_block` batches) goes to actor b mod n.

    The block's batches (cut where the local engine cuts them) are sent to the actor at once,
    so it goes from batch to batch without waiting for Ray Data to schedule a task; their
    results come back in order. The job and decoding settings are put in the object store once
    per job and resolved only by the actor.
    """
    import ray

    refs = [ray.put(job), ray.put(decoding)]  # in a list: the task leaves them unresolved

    def forward(block: dict[str, np.ndarray]):
        import ray

        index = block["index"]
        actor = actors[(int(index[0]) // (batch_size * per_block)) % len(actors)]
        cuts = [0, *np.flatnonzero(np.diff(index // batch_size)) + 1, len(index)]
        calls = [
            actor.explain.remote({k: v[a:b] for k, v in block.items()}, *refs)
            for a, b in itertools.pairwise(cuts)
        ]
        for call in calls:
            yield ray.get(call)

    return forward


def session(ray: Any) -> tuple[str, str]:
    """(node id, job id) of the driver; the same for every job of one Ray session."""
    try:
        context = ray.get_runtime_context()
        return context.get_node_id(), context.get_job_id()
    except Exception:  # e.g. a Ray Client connection: `acquire` checks the actors are alive
        return "unknown", "unknown"


def acquire(ray: Any, key: PoolKey, model: Any, keep: bool) -> list[Any]:
    """The actors for `key`: the kept pool when it matches and is alive, else new ones.

    Any other kept pool is stopped first (its CPUs and GPUs are needed). New actors are kept for
    the next job when `keep`; with `keep=False` the job starts its own actors, which end with it
    (Ray stops an actor when the last handle to it goes).
    """
    global _kept
    with _lock:
        if keep and _kept is not None and _kept[0] == key and _alive(ray, _kept[1]):
            return _kept[1]
        _stop(ray, key.session)
        # no restarts: a lost actor fails the job (a rerun resumes it) and the next job
        # starts new actors (`_alive`)
        cls = ray.remote(ModelActor).options(num_cpus=key.cpus, num_gpus=key.gpus)
        if model.device.type != "cpu":  # actors place it on their own device
            model = copy.deepcopy(model).to("cpu")
        shipped = ray.put(model)  # once into the object store for all actors
        actors = [cls.remote(shipped, key.device, key.threads) for _ in range(key.actors)]
        if keep:
            _kept = (key, actors)
        return actors


def _alive(ray: Any, actors: list[Any]) -> bool:
    try:
        ray.get([a.pid.remote() for a in actors], timeout=30)
        return True
    except Exception:  # a dead or unreachable actor: start new ones
        return False


def _stop(ray: Any, current: tuple[str, str] | None) -> int:
    """Stop the kept pool if it belongs to the `current` session (else it is gone already)."""
    global _kept
    if _kept is None:
        return 0
    key, actors = _kept
    _kept = None
    if current is None or key.session != current:
        return 0
    for actor in actors:
        with contextlib.suppress(Exception):  # already gone
            ray.kill(actor)
    return len(actors)


def release_actors() -> int:
    """Stop the model actors kept for the next `--engine ray` job; how many were stopped."""
    try:
        import ray
    except ImportError:
        return 0
    with _lock:
        return _stop(ray, session(ray) if ray.is_initialized() else None)


def forget(ray: Any) -> None:
    """Drop the kept pool without stopping it (its Ray session is about to end)."""
    global _kept
    with _lock:
        _kept = None
