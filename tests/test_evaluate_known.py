"""Known outcomes on real inputs: the default model (EfficientNet-Lite0, ImageNet weights) on
the four sample photos the REFERENCE measured (cat, coffee, rocket, motorcycle), with the
bundled boxes. Deletion at 16 steps to the normalized zero, as in the REFERENCE."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

import cnnvis
from cnnvis.evaluate import evaluate

PHOTOS = ["sample:cat", "sample:coffee", "sample:rocket", "sample:motorcycle"]


@pytest.fixture(scope="module")
def model():
    return cnnvis.load_model()


@contextmanager
def one_thread() -> Iterator[None]:
    """Runtime only, not the numbers: these runs are hundreds of small batch-1 passes, which
    intra-op threads barely speed up, and on a CPU shared with other jobs two threads that wait
    for each other made them 10-40x slower (measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def grad_cam(model):
    with one_thread():
        return evaluate(model, PHOTOS, ["grad-cam"], ["deletion", "pointing-game"], steps=16)


@pytest.fixture(scope="module")
def cascade(model):
    with one_thread():
        return evaluate(model, PHOTOS, ["gradient", "guided-backprop", "grad-cam"], ["cascading"])


def test_grad_cam_beats_smooth_random_and_its_reversed_order_on_deletion(grad_cam):
    mine = grad_cam.value("grad-cam", "deletion")
    assert mine < grad_cam.value("random", "deletion")
    assert mine < grad_cam.value("reversed:grad-cam", "deletion")
    assert [t[1] for t in grad_cam.targets.values()] == [
        "Egyptian cat",
        "espresso",
        "missile",
        "moped",
    ]
    assert grad_cam.count("pointing-game") == 4
    assert any("centre baseline is strong" in note for note in grad_cam.notes)


@pytest.mark.xfail(
    strict=True,
    reason="measured: Grad-CAM hits 3 of 4 photos, the centre baseline 4 of 4. On the rocket "
    "(a 16 px wide box in the middle) Grad-CAM's two maxima lie in the sky on either side, "
    "25 px from the rocket (7x7 layer, 32 px cells); see the evaluate report",
)
def test_grad_cam_points_at_least_as_well_as_the_centre(grad_cam):
    assert grad_cam.value("grad-cam", "pointing-game") >= grad_cam.value("centre", "pointing-game")


def _mean(ev, method: str, measure: str, step: int) -> float:
    values = [r.similarity[method][measure][step] for r in ev.randomization]
    return sum(values) / len(values)


def test_top_layer_randomization_changes_gradient_and_grad_cam_not_guided_backprop(cascade):
    assert cascade.randomization[0].steps[1] == "classifier"
    for measure in ("spearman-abs", "spearman", "ssim", "hog"):
        guided = _mean(cascade, "guided-backprop", measure, 1)
        assert guided > 0.9, measure
        for method in ("gradient", "grad-cam"):
            assert _mean(cascade, method, measure, 1) < guided - 0.3, (method, measure)
    flagged = {(f.method, f.baseline) for f in cascade.flags}
    assert flagged == {("guided-backprop", "after classifier")}


def test_full_cascading_randomization_decorrelates_gradient_and_grad_cam(cascade):
    """Mean over the four photos, as the paper averages over images: one Grad-CAM map has only
    7 x 7 free values, so a single image's rank correlation with an unrelated smooth map has a
    standard deviation of about 0.17 (measured); the mean over images is what is tested."""
    for method in ("gradient", "grad-cam"):
        for measure in ("spearman-abs", "spearman"):
            assert _mean(cascade, method, measure, -1) < 0.3, (method, measure)
