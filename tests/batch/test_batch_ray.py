"""`--engine ray` on a local Ray with 2 CPUs: the same index rows (timings aside) and the same
maps as the local engine on the same input, and resume on Ray."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

pytest.importorskip("pyarrow")
ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'cnnvis[ray]'")
pytest.importorskip("ray.data", reason="the Ray engine needs Ray Data: pip install 'ray[data]'")

from cnnvis import batch  # noqa: E402
from cnnvis.errors import CnnvisError  # noqa: E402
from cnnvis.model import LoadedModel, Preprocess  # noqa: E402

TIMING = ("seconds", "decode_seconds", "run")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    """A seeded random-init ResNet-18 at 64x64 (importable by Ray workers, unlike test models)."""
    torch.manual_seed(0)
    module = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    return LoadedModel(module, "resnet18", preprocess=Preprocess(resize_size=64, crop_size=64))


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """An ImageFolder tree: classes 3 and 7, seven pictures."""
    root = tmp_path_factory.mktemp("ray") / "tree"
    rng = np.random.default_rng(0)
    for i in range(7):
        path = root / ("3" if i % 2 else "7") / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((70, 80, 3)) * 255).astype(np.uint8)).save(path)
    return root


def rows(out: Path) -> list[dict]:
    table = batch.read_index(out).to_pylist()
    stripped = [{k: v for k, v in r.items() if k not in TIMING} for r in table]
    return sorted(stripped, key=lambda r: (r["relpath"], r["method"]))


def test_ray_engine_matches_the_local_engine(local_ray, model, tree, tmp_path):
    common = dict(
        methods=["grad-cam", "gradient"], target="label", batch_size=3, progress=False, png=True
    )
    local = batch.run(tree, tmp_path / "local", model, workers=0, **common)
    remote = batch.run(tree, tmp_path / "ray", model, engine="ray", actors=1, **common)
    assert (local.done, local.failed, local.skipped) == (7, 0, 0)
    assert (remote.done, remote.failed, remote.skipped) == (7, 0, 0)
    ours, theirs = rows(tmp_path / "local"), rows(tmp_path / "ray")
    assert len(ours) == 14 and ours == theirs
    assert {r["target_index"] for r in ours} == {3, 7}
    for r in ours:
        for path in (r["map_path"], r["png_path"]):
            assert path is not None
            assert (tmp_path / "local" / path).read_bytes() == (
                tmp_path / "ray" / path
            ).read_bytes()
        with np.load(tmp_path / "ray" / r["map_path"]) as maps:
            assert np.isfinite(maps["map"]).all() and np.abs(maps["map"]).max() > 0

    (tree / "3" / "broken.png").write_bytes(b"\x89PNG not really")
    local = batch.run(tree, tmp_path / "local", model, workers=0, **common)
    remote = batch.run(tree, tmp_path / "ray", model, engine="ray", **common)
    assert (local.done, local.skipped, local.failed) == (0, 7, 1)
    assert (remote.done, remote.skipped, remote.failed) == (0, 7, 1)
    ours, theirs = rows(tmp_path / "local"), rows(tmp_path / "ray")
    assert len(ours) == 16 and ours == theirs
    broken = [r for r in theirs if r["relpath"] == "3/broken.png"]
    assert [r["error_type"] for r in broken] == ["ImageError", "ImageError"]


def pictures(root: Path, count: int) -> Path:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True)
    for i in range(count):
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(root / f"{i}.png")
    return root


def same_maps(a: Path, b: Path) -> None:
    ra, rb = rows(a), rows(b)
    assert ra == rb and ra
    for r in ra:
        if r["map_path"] is not None:  # None: a file that is no picture
            assert (a / r["map_path"]).read_bytes() == (b / r["map_path"]).read_bytes()


def kept_pids() -> list[int]:
    from cnnvis.batch import ray_actors

    kept = ray_actors._kept
    return [] if kept is None else ray.get([a.pid.remote() for a in kept[1]])


def test_model_actors_outlive_a_job_and_serve_the_next(local_ray, model, tmp_path):
    """A second job on the same model reuses the actor process; another model replaces it."""
    images = pictures(tmp_path / "in", 5)
    common = dict(methods=["grad-cam"], batch_size=2, progress=False, engine="ray")
    batch.run(images, tmp_path / "a", model, **common)
    first = kept_pids()
    assert len(first) == 1
    batch.run(images, tmp_path / "b", model, **common)
    assert kept_pids() == first  # no new process, no model shipped again
    same_maps(tmp_path / "a", tmp_path / "b")

    torch.manual_seed(1)
    other = LoadedModel(
        torchvision.models.resnet18(weights=None, num_classes=10).eval(),
        "resnet18",
        preprocess=model.preprocess,
    )
    from cnnvis.batch import ray_actors

    old = ray_actors._kept[1]
    batch.run(images, tmp_path / "c", other, **common)
    second = kept_pids()
    assert len(second) == 1 and second != first
    with pytest.raises(ray.exceptions.RayActorError):  # stopped, not left holding a CPU
        ray.get(old[0].pid.remote(), timeout=60)
    assert rows(tmp_path / "c") != rows(tmp_path / "a")  # other weights, other maps

    # the same weights with another normalization (applied in the actor): not the kept actor
    renormalized = LoadedModel(
        other.module,
        other.name,
        preprocess=Preprocess(resize_size=64, crop_size=64, mean=(0.5, 0.5, 0.5)),
    )
    batch.run(images, tmp_path / "n", renormalized, **common)
    assert kept_pids() != second
    batch.run(images, tmp_path / "n-local", renormalized, **{**common, "engine": "local"})
    same_maps(tmp_path / "n", tmp_path / "n-local")
    batch.run(images, tmp_path / "c2", other, **common)
    second = kept_pids()
    same_maps(tmp_path / "c", tmp_path / "c2")

    ray.kill(ray_actors._kept[1][0])  # a kept actor lost (its node went away, say)
    batch.run(images, tmp_path / "e", other, **common)
    third = kept_pids()
    assert len(third) == 1 and third != second  # found dead, replaced
    assert rows(tmp_path / "e") == rows(tmp_path / "c")

    assert batch.release_actors() == 1
    assert batch.release_actors() == 0 and kept_pids() == []
    batch.run(images, tmp_path / "d", model, keep_actors=False, **common)
    assert kept_pids() == []
    same_maps(tmp_path / "a", tmp_path / "d")


def test_decoding_tasks_and_two_actors_give_the_local_results(local_ray, model, tmp_path):
    """Files decoded in CPU tasks (the GPU set-up) and blocks spread over two actors."""
    images = pictures(tmp_path / "in", 11)
    (images / "bad.png").write_bytes(b"not a picture")
    common = dict(methods=["grad-cam", "gradient"], batch_size=2, progress=False)
    local = batch.run(images, tmp_path / "local", model, workers=0, **common)
    remote = batch.run(
        images,
        tmp_path / "ray",
        model,
        engine="ray",
        actors=2,
        cpus_per_actor=0.5,  # leaves a CPU of the two to the decoding tasks
        decode_tasks=True,
        keep_actors=False,
        **common,
    )
    assert (local.done, local.failed) == (remote.done, remote.failed) == (11, 1)
    same_maps(tmp_path / "local", tmp_path / "ray")


def test_blocks_start_where_the_local_batches_start():
    from cnnvis.batch.engine_ray import _batches_per_block, _blocks
    from cnnvis.batch.inputs import Item

    items = [Item(f"/x/{i}.png", f"{i}.png") for i in range(11)]
    assert _batches_per_block(11, 2, 1) == 4  # 6 batches: blocks of 4 + 2
    assert _batches_per_block(11, 2, 4) == 1  # every actor gets a block
    assert _batches_per_block(3, 16, 1) == 1
    tables = _blocks(items, [None] * 5 + [3] * 6, 8)
    assert [t.num_rows for t in tables] == [8, 3]
    assert tables[1].column("index").to_pylist() == [8, 9, 10]
    assert tables[0].column("label_index").to_pylist() == [-1] * 5 + [3] * 3


def test_decoding_tasks_without_a_free_cpu_are_refused(local_ray, model, tmp_path):
    images = pictures(tmp_path / "in", 2)
    with pytest.raises(CnnvisError, match="needs a CPU that the actors do not hold"):
        batch.run(
            images, tmp_path / "out", model, engine="ray", cpus_per_actor=2, decode_tasks=True
        )


@pytest.fixture
def cluster():
    """A Ray cluster of its own, started the way a cluster's head node is (`ray start --head`),
    in its own temp dir so that no other Ray of the test session finds it; stopped after."""
    import os
    import shutil
    import socket
    import subprocess
    import sys
    import tempfile
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="cr", dir="/tmp")  # short: Ray's socket paths have a limit
    env = {
        **os.environ,
        "RAY_TMPDIR": temp,
        "RAY_USAGE_STATS_ENABLED": "0",
        # the cluster's shared secret, given to its nodes and drivers (Ray token authentication)
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": os.urandom(16).hex(),
    }
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        for line in head.stdout:
            if "Ray runtime started" in line or time.monotonic() > deadline:
                break
        assert head.poll() is None, "ray start --head failed"
        yield f"127.0.0.1:{port}", env
    finally:
        head.terminate()  # --block: stopping it stops the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        shutil.rmtree(temp, ignore_errors=True)


def test_cli_on_a_running_cluster_by_address(cluster, tmp_path):
    """RAY_ADDRESS, then --ray-address: the CLI joins the cluster as a driver (it does not start
    a Ray of its own), gives the local engine's rows and maps, and resumes there."""
    import subprocess
    import sys

    address, env = cluster
    images = pictures(tmp_path / "in", 4)
    r18 = ["--model", "torchvision:resnet18", "--weights", "none", "--seed", "0", "--json"]

    def cli(*args, **extra):
        done = subprocess.run(
            [sys.executable, "-m", "cnnvis", "batch", str(images), *r18, *args],
            env={**env, "OMP_NUM_THREADS": "1", **extra},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    cli("--out", str(tmp_path / "local"))
    remote = cli("--out", str(tmp_path / "ray"), "--engine", "ray", RAY_ADDRESS=address)
    assert (remote["done"], remote["failed"]) == (4, 0)
    same_maps(tmp_path / "local", tmp_path / "ray")
    run_json = json.loads((tmp_path / "ray" / "run.json").read_text())
    assert run_json["summary"]["engine"] == "ray"

    rng = np.random.default_rng(7)  # a picture of its own (an equal one would be an alias)
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(images / "new.png")
    again = cli("--out", str(tmp_path / "ray"), "--engine", "ray", "--ray-address", address)
    assert (again["done"], again["skipped"], again["failed"]) == (1, 4, 0)
