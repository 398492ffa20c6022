"""`--engine ray` on a local Ray with 2 CPUs: the same index rows (timings aside) and the same
maps as the local engine on the same input, and resume on Ray."""

from __future__ import annotations

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
