"""Issue 8: a folder of JPEGs through `cnnvis.batch.run` vs the bare explain loop.

256 JPEGs (224x224, smooth random pictures; 64 in --quick) in a temporary folder, ResNet-50
Grad-CAM at `layer4`, batches of 16. The yardstick ("bare") is `explain_many` over the same
images already decoded, preprocessed and stacked in memory: the model's work alone. The engines
read, hash, decode and preprocess every file, explain, compress and write every map and the
Parquet index, each timed call into a fresh output folder. Gated: throughput local / bare
>= 0.80 (input and output hidden behind compute) and Ray / bare >= 0.60 on this one machine.
The local Ray is started once before timing (as a cluster is already running in real use) and
the warm-up job starts the model actor; each timed Ray job builds its Ray Data pipeline and
reuses that actor, as every job after the first in a Ray session does (`keep_actors`). The
informational row "new actors" (`keep_actors=False`) is a job that starts its own actor process
(imports torch and torchvision, receives the model): what the first job of a session pays.
In a full run this workload runs in a process of its own (`fresh_process`).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import cnnvis
import cnnvis.batch
from cnnvis.batch.dataset import decode, to_display
from cnnvis.model import LoadedModel, Preprocess

from ..common import Context, Row, Target, agreement_row, correlation, log, time_row
from ..timing import time_once
from . import register

LAYER = "layer4"
METHOD = "grad-cam"
BATCH = 16
IMAGES = 256
QUICK_IMAGES = 64
SIZE = 224
LOCAL_SHARE = 0.80
RAY_SHARE = 0.60


def write_jpegs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` smooth random RGB pictures (bicubic-upsampled 14x14 noise) as JPEG, quality 90."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        small = Image.fromarray((rng.random((14, 14, 3)) * 255).astype(np.uint8))
        path = folder / f"{i:04d}.jpg"
        small.resize((SIZE, SIZE), Image.Resampling.BICUBIC).save(path, quality=90)
        paths.append(path)
    return paths


def preloaded(paths: list[Path], preprocess: Preprocess, device: torch.device) -> torch.Tensor:
    """The model inputs of `paths`, decoded exactly as the engines decode them."""
    pixels = torch.stack([decode(i, str(p), preprocess, ()).pixels for i, p in enumerate(paths)])
    return preprocess.normalize(to_display(pixels)).to(device)


def _start_ray(ctx: Context) -> tuple[bool, str | None]:
    """Start a local Ray for the workload: (whether this started it, why there is no Ray)."""
    try:
        import ray
        import ray.data
    except ImportError:
        return False, "ray is not installed (pip install 'cnnvis[ray]')"
    if ray.is_initialized():
        return False, None
    ray.init(num_cpus=ctx.threads, include_dashboard=False, log_to_driver=False)
    return True, None


@register(
    "batch-resnet50",
    "cnnvis batch over 256 JPEGs (local, Ray) vs the bare explain loop",
    quick=False,
    fresh_process=True,  # Ray's actors are new processes: the bare loop must run in one too
)
def batch_resnet50(ctx: Context) -> list[Row]:
    workload = "batch-resnet50"
    module = ctx.model("resnet50")
    preprocess = Preprocess(resize_size=SIZE, crop_size=SIZE)
    model = LoadedModel(module, "torchvision:resnet50", preprocess=preprocess)
    count = QUICK_IMAGES if ctx.quick else IMAGES
    root = Path(tempfile.mkdtemp(prefix="cnnvis-bench-batch-"))
    started = False
    try:
        paths = write_jpegs(root / "images", count)
        x = preloaded(paths, preprocess, ctx.device)
        started, ray_missing = _start_ray(ctx)
        runs = itertools.count()

        def bare():
            return [
                cnnvis.explain_many(model, x[i : i + BATCH], [METHOD], [LAYER])
                for i in range(0, count, BATCH)
            ]

        ray_options = {
            "actors": 1,
            "cpus_per_actor": 1,
            "threads_per_actor": ctx.threads,
            "device": str(ctx.device),
        }
        options = {
            "local": {"engine": "local"},
            "ray": {"engine": "ray", **ray_options},
        }

        def explain_folder(name: str, images: Path, out: Path) -> int:
            summary = cnnvis.batch.run(
                images,
                out,
                model,
                [METHOD],
                LAYER,
                batch_size=BATCH,
                progress=False,
                **options[name],
            )
            return summary.done

        def engine(name: str):
            def call():
                done = explain_folder(name, root / "images", root / f"{name}-{next(runs)}")
                if done != count:
                    raise RuntimeError(f"{name} engine explained {done} of {count}")

            return call

        candidates = {"bare": bare, "local": engine("local")}
        if ray_missing is None:
            candidates["ray"] = engine("ray")
        xb = x[:BATCH]
        time_once(lambda: cnnvis.explain_many(model, xb, [METHOD], [LAYER]), ctx.device)
        write_jpegs(root / "warm", BATCH, seed=1)
        for name in candidates.keys() - {"bare"}:  # worker processes, imports, Ray's pool
            explain_folder(name, root / "warm", root / f"warm-{name}")
        timings = ctx.measure(workload, candidates, warmup=0)
        if ray_missing is None:  # apart: a job with its own actor stops the kept one
            options["ray-cold"] = {**options["ray"], "keep_actors": False}
            timings.update(ctx.measure(workload, {"ray-cold": engine("ray-cold")}, warmup=0))
        t = {name: timing.median for name, timing in timings.items()}
        note = f"{count} JPEGs {SIZE}x{SIZE}, batch {BATCH}" + (" (--quick)" if ctx.quick else "")
        rows = [time_row(workload, timings["bare"], f"{count / t['bare']:.2f} images/s")]
        for name, share in (("local", LOCAL_SHARE), ("ray", RAY_SHARE)):
            if name not in t:
                log(f"  {workload}: no {name} row: {ray_missing}")
                continue
            rows.append(
                Row(
                    workload,
                    f"cnnvis batch --engine {name}",
                    t[name],
                    t["bare"] / t[name],
                    Target(f"throughput {name}/bare", ">=", share),
                    note=f"{note}: {count / t[name]:.2f} images/s",
                )
            )
        if "ray-cold" in t:
            rows.append(
                Row(
                    workload,
                    "cnnvis batch --engine ray, new actors",
                    t["ray-cold"],
                    t["bare"] / t["ray-cold"],
                    Target("throughput ray/bare", ">=", RAY_SHARE),
                    gate=False,
                    note=f"{note}: {count / t['ray-cold']:.2f} images/s; the job starts its actor",
                )
            )
        rows += _agreement(workload, root, model, x, "local")
        if "ray" in t:
            rows += _agreement(workload, root, model, x, "ray")
        return rows
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if started:
            import ray

            cnnvis.batch.release_actors()
            ray.shutdown()


def _agreement(
    workload: str, root: Path, model: LoadedModel, x: torch.Tensor, name: str
) -> list[Row]:
    """The stored maps of the last timed run of an engine vs the bare loop, first batch."""
    out = sorted(root.glob(f"{name}-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))[-1]
    ours = cnnvis.explain_many(model, x[:BATCH], [METHOD], [LAYER])[(METHOD, LAYER)].map
    stored = []
    for i in range(BATCH):
        with np.load(out / "maps" / f"{i:04d}.jpg" / f"{METHOD}@{LAYER}.npz") as maps:
            stored.append(torch.from_numpy(maps["map"]))
    return [agreement_row(workload, f"{name}~bare", correlation(torch.stack(stored), ours.cpu()))]
