"""The Ray engine: Ray Data reads and decodes in tasks, model-holding actors explain, the driver
writes. The same job as the local engine, scaled out over a cluster.

    file paths --map_batches(decode, CPU tasks; GPU actors only)--> uint8 pixels
               --map_batches(forwarder, tasks)--> ModelActor k: explain --> maps
               --iter_batches--> the driver's writer thread (OUT is on the driver's disk)

Each `ModelActor` (ray_actors.py) holds one copy of the model (shipped once through the object
store, so file and random-init weights are the same everywhere) and, with `gpus_per_actor`, one
GPU; CPU actors read and decode their own batches. The actors outlive the job, so the next job
on the same model in the same Ray session starts at once (`keep_actors=False` or
`cnnvis.batch.release_actors()` stops them). `address` or RAY_ADDRESS points at a running
cluster (`ray start --head`); without either a local Ray is started and stopped again (and with
it the actors). The input files must be readable at the same paths on every node.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CnnvisError
from ..model import LoadedModel
from .dataset import MISSING, OK, decode_batch
from .inputs import Item
from .ray_actors import PoolKey, acquire, forget, forwarder, model_identity, session
from .rows import Outcomes

log = logging.getLogger(__name__)

# Batches in one Ray block. A forwarding task sends all of them to its actor at once, so the
# actor goes from batch to batch without waiting for Ray Data to schedule the next task.
BATCHES_PER_BLOCK = 4


@dataclass
class RayOptions:
    """Where and how wide: cluster address, actors, and each actor's GPUs, CPUs, torch threads."""

    address: str | None = None
    actors: int = 1
    gpus_per_actor: float | None = None  # default: 1 when the model's device is CUDA, else 0
    cpus_per_actor: float | None = None  # default: 1 with a GPU, else the cluster's CPUs less one
    threads_per_actor: int | None = None  # torch threads; default: cpus_per_actor
    device: str | None = None  # where actors put the model; default cuda with a GPU, else cpu
    keep_actors: bool = True  # keep the model actors for the next job in this Ray session
    decode_tasks: bool | None = None  # decode in CPU tasks, not the actors; default: GPU actors


def _ray():
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise CnnvisError(
            "--engine ray needs Ray Data: pip install 'cnnvis[ray]' (or use --engine local)"
        ) from error
    return ray


def _connect(ray: Any, address: str | None) -> bool:
    """Connect to `address`/RAY_ADDRESS, or start a local Ray; True when this call started it."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    return True


def _resources(ray: Any, options: RayOptions, model: LoadedModel) -> tuple[float, float, int, str]:
    """(gpus, cpus, torch threads, device) for each actor, defaults filled in."""
    cuda = model.device.type == "cuda" or str(options.device or "").startswith("cuda")
    gpus = options.gpus_per_actor if options.gpus_per_actor is not None else (1.0 if cuda else 0)
    cpus = options.cpus_per_actor
    if cpus is None:
        total = ray.cluster_resources().get("CPU", 1)
        cpus = 1.0 if gpus else max(1.0, math.floor((total - 1) / max(1, options.actors)))
    threads = options.threads_per_actor or max(1, int(cpus))
    device = options.device or ("cuda" if gpus else "cpu")
    return gpus, cpus, threads, device


def run_ray(model: LoadedModel, outcomes: Outcomes, batch_size: int, options: RayOptions) -> None:
    """Explain every image of the job not done yet on Ray; what became of each goes to
    `outcomes`."""
    items, job = outcomes.items, outcomes.job
    ray = _ray()
    started = _connect(ray, options.address)
    ray_log = logging.getLogger("ray.data")
    level = ray_log.level
    ray_log.setLevel(logging.ERROR)  # its per-dataset lines; cnnvis has its own bar
    try:
        context = ray.data.DataContext.get_current()
        for flag in ("enable_progress_bars", "enable_operator_progress_bars"):
            if hasattr(context, flag):
                setattr(context, flag, False)
        gpus, cpus, threads, device = _resources(ray, options, model)
        if not items:
            return
        per_block = _batches_per_block(len(items), batch_size, options.actors)
        ds = ray.data.from_arrow(_blocks(items, outcomes.label_index, batch_size * per_block))
        decoding = {
            "preprocess": model.preprocess,
            "done": outcomes.reuse.done,
            "max_pixels": job.max_pixels,
        }
        # Decoding in CPU tasks keeps GPU actors busy with the model only. CPU actors decode
        # their own batches (~1 ms a file): a decoding task would compete with their torch
        # threads for the same cores.
        in_tasks = bool(gpus) if options.decode_tasks is None else options.decode_tasks
        if in_tasks:
            _require_a_free_cpu(ray, options.actors, cpus)
            ds = ds.map_batches(
                decode_batch,
                fn_kwargs=decoding,
                batch_size=None,  # whole blocks: the forwarder cuts them into the job's batches
                batch_format="numpy",
                num_cpus=1,
            )
        key = PoolKey(
            session(ray),
            model_identity(model, job.fingerprint),
            options.actors,
            gpus,
            cpus,
            threads,
            device,
        )
        actors = acquire(ray, key, model, keep=options.keep_actors and not started)
        ds = ds.map_batches(
            forwarder(actors, batch_size, per_block, job, None if in_tasks else decoding),
            batch_size=None,
            batch_format="numpy",
            # one task per actor at a time: Ray stops idle task workers beyond its CPU count,
            # so a second one per actor would mostly be a new process for every job
            compute=ray.data.TaskPoolStrategy(size=len(actors)),
            num_cpus=0,  # it waits on an actor, which holds the CPUs (and GPU) of its work
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            _write(batch, outcomes)
    finally:
        ray_log.setLevel(level)
        if started:
            forget(ray)
            ray.shutdown()


def _require_a_free_cpu(ray: Any, actors: int, cpus: float) -> None:
    """Decoding tasks need one CPU the actors do not hold, or they would wait forever."""
    total = ray.cluster_resources().get("CPU", 0)
    if total - actors * cpus < 1:
        raise CnnvisError(
            f"decoding in tasks needs a CPU that the actors do not hold: {actors} actor(s) x "
            f"{cpus:g} CPUs of the cluster's {total:g}; lower --cpus-per-actor or --actors, "
            "or leave decoding to the actors (--no-decode-tasks)"
        )


def _batches_per_block(count: int, batch_size: int, actors: int) -> int:
    """Up to BATCHES_PER_BLOCK batches a block, fewer when that leaves an actor without one."""
    batches = math.ceil(count / batch_size)
    return max(1, min(BATCHES_PER_BLOCK, batches // max(1, actors)))


def _blocks(items: Sequence[Item], label_index: Sequence[int | None], rows: int) -> list[Any]:
    """The job as Arrow tables of `rows` rows (index, path, label_index): one Ray block each, so
    the blocks and batches start where the local engine's batches start."""
    import pyarrow as pa

    tables = []
    for start in range(0, len(items), rows):
        stop = min(start + rows, len(items))
        tables.append(
            pa.table(
                {
                    "index": pa.array(range(start, stop), pa.int64()),
                    "path": [items[i].path for i in range(start, stop)],
                    "label_index": pa.array(
                        [
                            -1 if label_index[i] is None else label_index[i]
                            for i in range(start, stop)
                        ],
                        pa.int64(),
                    ),
                }
            )
        )
    return tables


def _none(value: Any) -> Any:
    """Back from Ray's fixed-type columns: '' and -1 were None; NumPy scalars as Python."""
    if isinstance(value, np.generic):
        value = value.item()
    return None if value in ("", -1) else value


def _write(batch: dict[str, np.ndarray], outcomes: Outcomes) -> None:
    """Hand one output batch of the actors to the writer, the way the local engine does."""
    images = []  # (status, fields) of each image of the batch
    for i, index in enumerate(batch["index"]):
        decoded = {name: _none(batch[name][i]) for name in MISSING}
        decoded["status"] = str(batch["status"][i])
        decoded["decode_seconds"] = float(batch["decode_seconds"][i])
        images.append((decoded["status"], outcomes.fields(int(index), **decoded)))
    outcomes.not_explained(image for image in images if image[0] != OK)
    ok = [i for i, (status, _) in enumerate(images) if status == OK]
    if not ok:
        return
    take = np.array(ok)
    decode_names = {"index", "label_index", "pixels", "status", "decode_seconds", *MISSING}
    columns = {}
    for name, column in batch.items():
        if name in decode_names:
            continue
        column = column[take]
        if column.dtype.kind in "OUS":  # strings: '' was None
            column = np.array([None if v == "" else str(v) for v in column], dtype=object)
        columns[name] = column
    pixels = batch["pixels"][take] if outcomes.job.png else None
    outcomes.explained([images[i][1] for i in ok], columns, pixels)
