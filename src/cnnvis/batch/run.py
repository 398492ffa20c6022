"""`cnnvis.batch.run`: explain a whole dataset into OUT, resumably, locally or on Ray.

OUT/index/part-*.parquet   the index: a row per image and map (see `index.schema`)
OUT/maps/<relpath>/<method>[@layer].npz (and .png)   the maps, mirroring the input tree
OUT/run.json               the settings and the summary of the last run
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CnnvisError, TargetError
from ..model import LoadedModel, as_loaded
from .index import Index, atomic_write, clear_scratch
from .inputs import discover
from .job import Job, MapKey, model_fingerprint, settings_hashes
from .labels import label_indices, require_label_targets
from .lock import held
from .rows import Outcomes, Reuse
from .run_state import Progress
from .writer import Writer

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")


@dataclass
class BatchSummary:
    """What a run did: images done now, skipped (done before), failed; time and throughput."""

    out: str
    engine: str
    total: int
    done: int
    skipped: int
    failed: int
    seconds: float
    rows: int  # rows in the index after the run
    failures: list[dict[str, str]] = field(default_factory=list)  # {"source", "error"} each

    @property
    def images_per_second(self) -> float:
        """Images explained in this run per second of the run (skipped ones not counted)."""
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_second": round(self.images_per_second, 3)}

    def __str__(self) -> str:
        return (
            f"{self.total} images: {self.done} done, {self.skipped} skipped (done before), "
            f"{self.failed} failed in {self.seconds:.1f}s ({self.images_per_second:.2f} images/s,"
            f" {self.engine} engine); index: {self.out}/index"
        )

    def failure_lines(self, limit: int = 20) -> list[str]:
        """The failed files, one line each ('FILE: why'), the first `limit` of them and a
        line for the rest (all of them are in the index's `error` column and in run.json)."""
        lines = [f"{f['source']}: {f['error']}" for f in self.failures[:limit]]
        if len(self.failures) > limit:
            lines.append(f"... and {len(self.failures) - limit} more (see run.json)")
        return lines


def run(
    inputs: str | os.PathLike[str],
    out: str | os.PathLike[str],
    model: str | nn.Module | LoadedModel = "default",
    methods: Sequence[str] | str = ("grad-cam",),
    layer: str | Sequence[str] | None = None,
    target: str | int = "top1",
    *,
    weights: str | None = "DEFAULT",
    device: str | None = None,
    output: str | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    batch_size: int = 16,
    workers: int | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    actors: int = 1,
    gpus_per_actor: float | None = None,
    cpus_per_actor: float | None = None,
    threads_per_actor: int | None = None,
    keep_actors: bool = True,
    decode_tasks: bool | None = None,
    png: bool = False,
    cmap: str = "jet",
    max_pixels: int | None = None,
    progress: bool | None = None,
    compact: bool = True,
    trust_pickle: bool = False,
) -> BatchSummary:
    """Explain every image of INPUT (folder, ImageFolder tree, glob, CSV/TXT list) into `out`.

    Writes one `.npz` per image and map (optionally a PNG overlay) and a Parquet index with a
    row per image and map; images already done with the same content hash and settings are
    skipped, bad files are recorded as errors. `target`: "top1", "label" (the class folders or
    the CSV's label column), a class index or a class name. `engine="ray"` runs the model in
    `actors` Ray actors (RAY_ADDRESS or `ray_address` for a cluster, else a local Ray); they
    stay up for the next job on the same model in the same Ray session unless `keep_actors` is
    False (`release_actors()` stops them); `decode_tasks` reads and decodes the files in
    separate CPU tasks (default: only for GPU actors). `trust_pickle`: see `load_model` (a
    model file that is not weights-only runs any code it holds when unpickled).
    """
    start = time.perf_counter()
    if engine not in ENGINES:
        raise CnnvisError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if batch_size < 1:
        raise CnnvisError(f"batch_size must be at least 1, got {batch_size}")
    place = None if engine == "ray" else device  # Ray: the actors place the model
    lm = _model(model, weights, place, trust_pickle)
    found = discover(inputs)
    classes, categories = _classes(lm, output)
    method_names = [methods] if isinstance(methods, str) else list(methods)
    keys = _keys(lm, method_names, layer)
    target_text = _target(target, lm, classes, categories, output)
    labels = [item.label for item in found.items]
    if target_text == "label":
        label_index: list[int | None] = list(
            require_label_targets(labels, categories, classes, [i.relpath for i in found.items])
        )
    else:
        mapping = label_indices(labels, categories, classes)
        label_index = [None if lab is None else mapping[lab] for lab in labels]
    per_method = {k: dict(v) for k, v in (params or {}).items()}
    job = Job(keys, per_method, target_text, output, png, cmap, max_pixels=max_pixels)
    job.fingerprint = model_fingerprint(lm)
    job.settings = settings_hashes(lm, keys, per_method, target_text, output, job.fingerprint)
    out_dir = Path(out)
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    with held(out_dir):
        index = Index(out_dir)
        clear_scratch(out_dir)  # leftovers of a killed run
        reuse = Reuse(index.read(), job, run_id)
        writer = Writer(out_dir, job, lm.name, run_id)
        bar = Progress(len(found.items), progress)
        outcomes = Outcomes(found.items, label_index, job, reuse, writer, bar)
        try:
            if engine == "local":
                from .engine_local import run_local

                run_local(lm, outcomes, batch_size=batch_size, workers=_workers(workers))
            else:
                from .engine_ray import RayOptions, run_ray

                options = RayOptions(
                    ray_address,
                    actors,
                    gpus_per_actor,
                    cpus_per_actor,
                    threads_per_actor,
                    device,
                    keep_actors,
                    decode_tasks,
                )
                run_ray(lm, outcomes, batch_size, options)
        finally:
            bar.close()
            writer.close()
        if compact:
            index.compact()
        rows = index.read().num_rows
    c = bar.counts
    failures = [{"source": source, "error": error} for source, error in c.failures]
    summary = BatchSummary(
        str(out_dir),
        engine,
        len(found.items),
        c.done,
        c.skipped,
        c.failed,
        bar.seconds,
        rows,
        failures,
    )
    _write_run_json(out_dir, lm, job, found, summary, time.perf_counter() - start)
    return summary


def _model(model: Any, weights: str | None, device: str | None, trust: bool) -> LoadedModel:
    if isinstance(model, str | os.PathLike):
        from ..zoo import load_model

        return load_model(model, weights=weights, device=device, trust_pickle=trust)
    lm = as_loaded(model)
    if device is not None:
        lm.to(device)
    return lm


def _classes(lm: LoadedModel, output: str | None) -> tuple[int, list[str] | None]:
    """The number of classes and the class names: from the model's class names, else from one
    no-grad forward of a blank image."""
    from ..api import _categories
    from ..forwards import guarded_forward
    from ..targets import select_logits

    if lm.categories:
        return len(lm.categories), lm.categories
    size = lm.preprocess.crop_size
    x = lm.preprocess.normalize(torch.zeros(1, 3, size, size)).to(lm.device)
    with guarded_forward(lm.module, grad=False):
        classes = select_logits(lm.module(x), output).shape[1]
    return classes, _categories(lm, classes)


def _keys(lm: LoadedModel, methods: list[str], layer: str | Sequence[str] | None) -> list[MapKey]:
    """One map key per method, and per layer for methods that take one ('auto' resolved)."""
    from ..layers import requested_layers
    from ..methods import get_method

    infos = [get_method(m) for m in dict.fromkeys(methods)]
    if not infos:
        raise CnnvisError("no method given; pass methods=['grad-cam', ...]")
    size = lm.preprocess.crop_size
    needed = any(i.needs_layer for i in infos)
    names = requested_layers(lm.module, layer, needed=needed, input_shape=(1, 3, size, size))
    return [MapKey(i.name, n) for i in infos for n in (names if i.needs_layer else [None])]


def _target(
    target: str | int, lm: LoadedModel, classes: int, categories: list[str] | None, output
) -> str:
    """The target rule as text ('top1', 'label', an index or a class name), checked now."""
    from ..targets import UnitTarget, parse_target, resolve_targets

    text = str(target).strip()
    if text.lower() in ("top1", "top-1", ""):
        return "top1"
    if text.lower() == "label":
        return "label"
    spec = parse_target(text)
    if isinstance(spec, UnitTarget):
        raise TargetError(
            "batch runs explain a class: --target top1, label, an index or a class name"
        )
    resolve_targets(spec, torch.zeros(1, classes), categories)  # raises a TargetError if bad
    return text


def _workers(workers: int | None) -> int:
    """DataLoader workers: as given, else 0 on one or two cores and one per four cores above
    that, at most 4. Decoding costs ~1 ms per 224x224 JPEG, a tenth of a ResNet-50 image on a
    CPU: on two cores, where torch's threads already use both, a worker process only competes
    with them (measured: 128 JPEGs through ResNet-50 Grad-CAM, 1 worker 5.85 s, decoding in
    this process 4.58 s, the bare loop on decoded tensors 4.76 s); with more cores it hides
    the decoding and its GIL time behind the model."""
    if workers is not None:
        if workers < 0:
            raise CnnvisError(f"workers must be 0 or more, got {workers}")
        return workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    return 0 if cores <= 2 else max(1, min(4, cores // 4))


def _write_run_json(
    out: Path, lm: LoadedModel, job: Job, found: Any, summary: BatchSummary, seconds: float
) -> None:
    from ..manifest import batch_manifest, dumps

    inputs = {"root": found.root, "kind": found.kind, "ignored_files": found.ignored}
    maps = [{"method": k.method, "layer": k.layer, "settings": job.settings[k]} for k in job.keys]
    facts = batch_manifest(lm, inputs, job.target, maps, job.params, summary.as_dict(), seconds)
    text = dumps(facts)
    atomic_write(out / "run.json", lambda tmp: tmp.write_text(text), out)
