"""Tests for cnnvis.detection.BoxTarget: by hand, against pytorch-grad-cam's
FasterRCNNBoxScoreTarget, and through random-init torchvision detectors (with gradients)."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import (
    fasterrcnn_mobilenet_v3_large_320_fpn,
    ssdlite320_mobilenet_v3_large,
)

from cnnvis.detection import BoxTarget, read_detections
from cnnvis.errors import TargetError

BOXES = torch.tensor([[0.0, 0.0, 10.0, 10.0], [2.0, 0.0, 12.0, 10.0], [20.0, 20.0, 30.0, 40.0]])
SCORES = torch.tensor([0.9, 0.6, 0.3])
LABELS = torch.tensor([3, 3, 5])
OUTPUT = [{"boxes": BOXES, "scores": SCORES, "labels": LABELS}]


@pytest.fixture(scope="module")
def detector() -> torch.nn.Module:
    """A random-init Faster R-CNN that keeps every box (score threshold 0), five classes."""
    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=5, box_score_thresh=0.0
    )
    return model.eval()


def test_index_target_by_hand():
    assert BoxTarget(0).scores(OUTPUT, {}).tolist() == pytest.approx([1.0 + 0.9])
    assert BoxTarget(2).scores(OUTPUT, {}).tolist() == pytest.approx([1.0 + 0.3])
    assert str(BoxTarget(2)) == "box:2"


def test_user_box_matched_by_iou_and_label_by_hand():
    # against box 1 ([2,0,12,10]): overlap 9 x 10 = 90, union 100 + 100 - 90 = 110
    target = BoxTarget(box=(1.0, 0.0, 11.0, 10.0), label=3)
    # IoU with box 0 = 90/110, with box 1 = 90/110 too: the first best is taken (box 0)
    assert target.scores(OUTPUT, {}).item() == pytest.approx(90 / 110 + 0.9)
    shifted = BoxTarget(box=(3.0, 0.0, 13.0, 10.0), label=3)  # closer to box 1
    assert shifted.scores(OUTPUT, {}).item() == pytest.approx(90 / 110 + 0.6)
    # a label with no overlapping box scores 0, and so does an IoU at or below the threshold
    assert BoxTarget(box=(1.0, 0.0, 11.0, 10.0), label=5).scores(OUTPUT, {}).item() == 0.0
    assert BoxTarget(box=(5.0, 0.0, 15.0, 10.0), label=3, iou_threshold=0.6).scores(
        OUTPUT, {}
    ).item() == pytest.approx(0.0)
    two = BoxTarget(box=[(0.0, 0.0, 10.0, 10.0), (20.0, 20.0, 30.0, 40.0)], label=[3, 5])
    assert two.scores(OUTPUT, {}).item() == pytest.approx(1.9 + 1.3)


def test_agrees_with_pytorch_grad_cam_recipe(detector):
    from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

    torch.manual_seed(1)
    images = torch.rand(2, 3, 128, 160)
    with torch.no_grad():
        output = detector(images)
    for n, found in enumerate(read_detections(output)):
        picked = [0, 3, 7]
        ours = BoxTarget(box=found.boxes[picked], label=found.labels[picked].tolist())
        theirs = FasterRCNNBoxScoreTarget(found.labels[picked], found.boxes[picked].numpy())
        assert ours.scores([output[n]], {}).item() == pytest.approx(
            theirs(output[n]).item(), rel=1e-6
        )
        for i in picked:  # box i's own score: IoU 1 + its score
            expected = theirs.__class__(found.labels[i : i + 1], found.boxes[i : i + 1].numpy())
            assert BoxTarget(i).scores([output[n]], {}).item() == pytest.approx(
                expected(output[n]).item(), rel=1e-6
            )


def test_score_has_a_gradient_through_the_detector(detector):
    torch.manual_seed(2)
    images = torch.rand(2, 3, 128, 128, requires_grad=True)
    output = detector(images)
    scores = BoxTarget(1).scores(output, {})
    assert scores.shape == (2,) and scores.requires_grad
    (grad,) = torch.autograd.grad(scores.sum(), images)
    per_image = grad.abs().flatten(1).sum(dim=1)
    assert torch.isfinite(grad).all() and (per_image > 0).all()
    # each image's score depends on that image only
    images2 = images.detach().clone().requires_grad_(True)
    (only_first,) = torch.autograd.grad(BoxTarget(1).scores(detector(images2), {})[0], images2)
    assert only_first[1].abs().sum() == 0 and only_first[0].abs().sum() > 0


def test_ssdlite_score_has_a_gradient():
    torch.manual_seed(0)
    model = ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=4, score_thresh=0.0
    ).eval()
    images = torch.rand(1, 3, 96, 96, requires_grad=True)
    score = BoxTarget(0).scores(model(images), {})
    (grad,) = torch.autograd.grad(score.sum(), images)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_a_detector_that_finds_nothing_says_so():
    torch.manual_seed(0)
    plain = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None).eval()
    with torch.no_grad():
        output = plain(torch.rand(1, 3, 96, 96))  # random init: no score above 0.05
    assert len(output[0]["boxes"]) == 0
    with pytest.raises(TargetError, match="found nothing in image 0: no box scored above"):
        BoxTarget(0).scores(output, {})
    with pytest.raises(TargetError, match="found nothing in image 0, so no box matches"):
        BoxTarget(box=(0, 0, 5, 5), label=1).bind(output)


def test_box_index_out_of_range_names_the_count():
    with pytest.raises(TargetError, match=r"found 3 boxes in image 0 \(box:0 to box:2\)"):
        BoxTarget(3).scores(OUTPUT, {})


def test_bind_fixes_the_reference_for_other_forwards():
    bound = BoxTarget(1).bind(OUTPUT)
    moved = [{"boxes": BOXES[[2, 1, 0]], "scores": SCORES[[2, 1, 0]], "labels": LABELS[[2, 1, 0]]}]
    # box 1 of the first output is [2,0,12,10] (0.6); in `moved` it is still found by IoU
    assert bound.scores(moved, {}).item() == pytest.approx(1.6)
    gone = [{"boxes": BOXES[2:], "scores": SCORES[2:], "labels": LABELS[2:]}]
    assert bound.scores(gone, {}).item() == 0.0  # a perturbed image may lose the object
    # one image's reference serves a batch of its perturbed copies
    assert bound.scores(moved + gone, {}).tolist() == pytest.approx([1.6, 0.0])
    with pytest.raises(TargetError, match="bound to 2 images but the output has 3"):
        BoxTarget(1).bind(OUTPUT * 2).scores(OUTPUT * 3, {})
    with pytest.raises(TargetError, match=r"no detection of label 5 overlaps.*box:0"):
        BoxTarget(box=(0.0, 0.0, 10.0, 10.0), label=5).bind(OUTPUT)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "index or a box"),
        ({"index": 1, "box": (0, 0, 1, 1)}, "index or a box"),
        ({"index": -1}, "negative"),
        ({"index": 1.5}, "integer"),
        ({"box": (0, 0, 1, 1)}, "needs the label"),
        ({"box": (5, 0, 1, 1), "label": 1}, "x0 < x1"),
        ({"box": (0, 0, 1), "label": 1}, r"shape \(1, 3\)"),
        ({"box": [(0, 0, 1, 1)] * 3, "label": [1, 2]}, "3 boxes need one label or 3"),
        ({"index": 0, "iou_threshold": 1.5}, "iou_threshold"),
    ],
)
def test_bad_box_targets(kwargs, match):
    with pytest.raises(TargetError, match=match):
        BoxTarget(**kwargs)


def test_a_box_that_matches_nothing_scores_zero_with_a_zero_gradient(detector):
    images = torch.rand(1, 3, 96, 96, requires_grad=True)
    target = BoxTarget(box=(0.0, 0.0, 2.0, 2.0), label=4)  # a 2-pixel box: no detection there
    score = target.scores(detector(images), {})
    assert score.item() == 0.0 and score.requires_grad
    (grad,) = torch.autograd.grad(score.sum(), images)
    assert grad.abs().sum() == 0
