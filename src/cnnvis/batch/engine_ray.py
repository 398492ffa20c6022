"""The Ray engine: Ray Data reads and decodes in tasks, model-holding actors explain, the driver
writes. The same job as the local engine, scaled out over a cluster.

    files --map_batches(decode, tasks)--> uint8 pixels --map_batches(Explainer, actors)--> maps
          --iter_batches--> the driver's writer thread (OUT is on the driver's disk)

Each actor holds one copy of the model (shipped once through the object store, so file and
random-init weights are the same everywhere) and, with `gpus_per_actor`, one GPU. `address` or
RAY_ADDRESS points at a running cluster (`ray start --head`); without either a local Ray is
started and stopped again. The input files must be readable at the same paths on every node.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import CnnvisError
from ..model import LoadedModel, Preprocess
from .compute import explain_columns
from .dataset import OK, SKIPPED, decode
from .inputs import Item
from .job import Job
from .rows import Reuse, failed_images, image_fields
from .run_state import Progress
from .writer import Batch, Writer

log = logging.getLogger(__name__)

_MISSING = {
    "sha256": "",
    "error_type": "",
    "error": "",
    "size_bytes": -1,
    "width": -1,
    "height": -1,
}


@dataclass
class RayOptions:
    """Where and how wide: cluster address, actors, and each actor's GPUs, CPUs, torch threads."""

    address: str | None = None
    actors: int = 1
    gpus_per_actor: float | None = None  # default: 1 when the model's device is CUDA, else 0
    cpus_per_actor: float | None = None  # default: 1 with a GPU, else the cluster's CPUs less one
    threads_per_actor: int | None = None  # torch threads; default: cpus_per_actor
    device: str | None = None  # where actors put the model; default cuda with a GPU, else cpu


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


def decode_batch(
    batch: dict[str, np.ndarray],
    preprocess: Preprocess,
    done: frozenset[str],
    max_pixels: int | None = None,
) -> dict[str, np.ndarray]:
    """Ray Data task: read, hash and decode a batch of files into fixed-type columns."""
    size = preprocess.crop_size
    n = len(batch["index"])
    pixels = np.zeros((n, 3, size, size), dtype=np.uint8)
    out: dict[str, list[Any]] = {name: [] for name in ("status", "decode_seconds", *_MISSING)}
    for i, (index, path) in enumerate(zip(batch["index"], batch["path"], strict=True)):
        record = decode(int(index), str(path), preprocess, done, max_pixels)
        out["status"].append(record.status)
        out["decode_seconds"].append(record.decode_seconds)
        for name, missing in _MISSING.items():
            value = getattr(record, name)
            out[name].append(missing if value is None else value)
        if record.pixels is not None:
            pixels[i] = record.pixels.numpy()
    columns = {name: np.array(values) for name, values in out.items()}
    for name in ("sha256", "error_type", "error", "status"):
        columns[name] = np.array(out[name], dtype=object)
    return {
        "index": batch["index"],
        "label_index": batch["label_index"],
        "pixels": pixels,
        **columns,
    }


class Explainer:
    """Ray Data actor: one model, explaining the decodable rows of each batch it is given."""

    def __init__(
        self,
        model: Any,
        job: Job,
        device: str,
        threads: int,
        decoding: dict[str, Any] | None = None,
    ):
        import ray

        if isinstance(model, ray.ObjectRef):
            model = ray.get(model)
        torch.set_num_threads(max(1, threads))
        self.model: LoadedModel = model.to(device)
        self.job = job
        self.decoding = decoding  # decode the files here (CPU actors), else they come decoded

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.decoding is not None:
            batch = decode_batch(batch, **self.decoding)
        ok = np.array([s == OK for s in batch["status"]], dtype=bool)
        out = {k: v for k, v in batch.items() if k != "pixels" or self.job.png}
        if ok.any():
            pixels = torch.from_numpy(np.ascontiguousarray(batch["pixels"][ok]))
            columns = explain_columns(self.model, pixels, batch["label_index"][ok], self.job)
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


def run_ray(
    model: LoadedModel,
    items: Sequence[Item],
    label_index: Sequence[int | None],
    job: Job,
    reuse: Reuse,
    writer: Writer,
    progress: Progress,
    batch_size: int,
    options: RayOptions,
) -> None:
    """Explain every item not done yet on Ray; outcomes are counted on `progress`."""
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
        shipped = model if model.device.type == "cpu" else copy.deepcopy(model).to("cpu")
        rows = [
            {"index": i, "path": item.path, "label_index": -1 if li is None else li}
            for i, (item, li) in enumerate(zip(items, label_index, strict=True))
        ]
        if not rows:
            return
        blocks = max(1, math.ceil(len(rows) / batch_size))
        try:
            ds = ray.data.from_items(rows, override_num_blocks=blocks)
        except TypeError:  # Ray < 2.10
            ds = ray.data.from_items(rows, parallelism=blocks)
        decoding = {
            "preprocess": model.preprocess,
            "done": reuse.done,
            "max_pixels": job.max_pixels,
        }
        if gpus:  # decoding in CPU tasks keeps the GPU actors busy with the model only
            ds = ds.map_batches(
                decode_batch,
                fn_kwargs=decoding,
                batch_size=batch_size,
                batch_format="numpy",
                num_cpus=1,
            )
        ds = ds.map_batches(
            Explainer,
            fn_constructor_kwargs={
                "model": ray.put(shipped),  # once into the object store, kept alive here
                "job": job,
                "device": device,
                "threads": threads,
                # CPU actors decode their own batches (~1 ms a file): a separate decoding
                # task would only compete with the actor's torch threads for the same cores
                "decoding": None if gpus else decoding,
            },
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=max(1, options.actors)),
            num_gpus=gpus,
            num_cpus=cpus,
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            _write(batch, items, label_index, job, reuse, writer, progress)
    finally:
        ray_log.setLevel(level)
        if started:
            ray.shutdown()


def _none(value: Any) -> Any:
    """Back from Ray's fixed-type columns: '' and -1 were None; NumPy scalars as Python."""
    if isinstance(value, np.generic):
        value = value.item()
    return None if value in ("", -1) else value


def _write(
    batch: dict[str, np.ndarray],
    items: Sequence[Item],
    label_index: Sequence[int | None],
    job: Job,
    reuse: Reuse,
    writer: Writer,
    progress: Progress,
) -> None:
    """Hand one output batch of the actors to the writer, the way the local engine does."""
    ok_rows, errors, aliases = [], [], []
    for i, index in enumerate(batch["index"]):
        index = int(index)
        decoded = {name: _none(batch[name][i]) for name in _MISSING}
        decoded["status"] = str(batch["status"][i])
        decoded["decode_seconds"] = float(batch["decode_seconds"][i])
        fields = image_fields(items[index], label_index[index], **decoded)
        if decoded["status"] == OK:
            ok_rows.append((i, fields))
        elif decoded["status"] == SKIPPED:
            aliases += reuse.alias_rows(fields)
            progress.count(skipped=1)
        else:
            errors.append(fields)
            progress.count(failed=1)
    if errors or aliases:
        writer.submit(Batch(errors, rows=aliases))
    if not ok_rows:
        return
    take = np.array([i for i, _ in ok_rows])
    decode_names = {"index", "label_index", "pixels", "status", "decode_seconds", *_MISSING}
    columns = {}
    for name, column in batch.items():
        if name in decode_names:
            continue
        column = column[take]
        if column.dtype.kind in "OUS":  # strings: '' was None
            column = np.array([None if v == "" else str(v) for v in column], dtype=object)
        columns[name] = column
    pixels = batch["pixels"][take] if job.png else None
    writer.submit(Batch([fields for _, fields in ok_rows], columns, pixels))
    failed = int(failed_images(columns, job, len(take)).sum())
    progress.count(done=len(take) - failed, failed=failed)
