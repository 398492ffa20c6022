"""Tests for cnnvis.detection.drise: agreement with a straightforward per-mask loop (same seed,
same masks), the masks, seeding, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from scenes import SIZE, TinyDetector, two_shapes
from torchvision.models.detection import ssdlite320_mobilenet_v3_large

from cnnvis.detection import BoxTarget, draw_masks, drise
from cnnvis.errors import MethodError, TargetError


def _iou(a: list[float], b: list[float]) -> float:
    """IoU of two (x0, y0, x1, y1) boxes, by hand."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def reference_drise(detector, image, index, masks) -> torch.Tensor:
    """D-RISE as the paper writes it, one mask at a time: s = IoU * cos(P_t, P_j) * O_j (one-hot
    labels and the score as objectness when the detector gives no probabilities)."""
    with torch.no_grad():
        clean = detector(image[None])[0]
        box = clean["boxes"][index].tolist()
        label = int(clean["labels"][index])
        probs = clean.get("probabilities")
        target = probs[index].tolist() if probs is not None else None
        total = torch.zeros(image.shape[1:])
        for mask in masks:
            out = detector((image * mask)[None])[0]
            best = 0.0
            for j in range(len(out["boxes"])):
                iou = _iou(box, out["boxes"][j].tolist())
                if target is None:
                    cosine = 1.0 if int(out["labels"][j]) == label else 0.0
                    objectness = float(out["scores"][j])
                else:
                    theirs = out["probabilities"][j].tolist()
                    dot = sum(p * q for p, q in zip(target, theirs, strict=True))
                    norms = math.sqrt(sum(p * p for p in target)) * math.sqrt(
                        sum(q * q for q in theirs)
                    )
                    cosine, objectness = dot / norms, 1.0
                best = max(best, iou * cosine * objectness)
            total += best * mask
    return total / len(masks)


@pytest.fixture(scope="module")
def untrained() -> TinyDetector:
    torch.manual_seed(3)
    return TinyDetector(score_threshold=0.36).eval()


def test_agrees_with_the_per_mask_loop_with_class_probabilities(untrained):
    image = two_shapes()[0]
    with torch.no_grad():
        assert len(untrained(image[None])[0]["boxes"]) >= 3  # something to match against
    masks = draw_masks(48, (SIZE, SIZE), grid=4, seed=5).render()
    expected = reference_drise(untrained, image, 1, masks)
    got = drise(untrained, image, 1, masks=48, grid=4, seed=5, batch_size=20)
    assert got.shape == (SIZE, SIZE) and expected.abs().max() > 0
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_agrees_with_the_per_mask_loop_on_torchvision_ssdlite():
    torch.manual_seed(0)
    detector = ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=3, score_thresh=0.3, detections_per_img=20
    ).eval()
    image = two_shapes()[0][:, :48, :48]
    masks = draw_masks(12, (48, 48), grid=4, seed=1).render()
    expected = reference_drise(detector, image, 0, masks)
    got = drise(detector, image[None], BoxTarget(0), masks=12, grid=4, seed=1, batch_size=5)
    assert expected.abs().max() > 0
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_masks_are_seeded_smooth_and_kept_with_the_probability():
    state = torch.get_rng_state()
    first = draw_masks(200, (40, 56), grid=5, probability=0.3, seed=9)
    masks = first.render()
    assert torch.equal(torch.get_rng_state(), state)  # the global random state is left alone
    assert masks.shape == (200, 40, 56) and masks.min() >= 0 and masks.max() <= 1 + 1e-6
    assert masks.mean().item() == pytest.approx(0.3, abs=0.03)
    assert torch.equal(masks, draw_masks(200, (40, 56), grid=5, probability=0.3, seed=9).render())
    assert torch.equal(first.render(50, 80), masks[50:80])  # rendered in slices, the same
    assert not torch.equal(masks, draw_masks(200, (40, 56), grid=5, probability=0.3).render())
    # smooth: neighbouring pixels differ by at most one cell's bilinear step
    assert (masks[:, :, 1:] - masks[:, :, :-1]).abs().max() <= 1 / 12 + 1e-6


def test_seeded_and_batch_size_free(untrained):
    image = two_shapes()[0]
    a = drise(untrained, image, 0, masks=40, grid=4, seed=2, batch_size=40)
    b = drise(untrained, image, 0, masks=40, grid=4, seed=2, batch_size=7)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    c = drise(untrained, image, 0, masks=40, grid=4, seed=3)
    assert not torch.allclose(a, c)


def test_a_user_box_is_a_one_hot_target(untrained):
    image = two_shapes()[0]
    with torch.no_grad():
        clean = untrained(image[None])[0]
    box, label = clean["boxes"][0], int(clean["labels"][0])
    by_box = drise(untrained, image, BoxTarget(box=box, label=label), masks=30, grid=4, seed=4)
    assert by_box.abs().max() > 0 and torch.isfinite(by_box).all()


def test_bad_input():
    detector = TinyDetector(score_threshold=0.99).eval()  # random init: finds nothing
    image = two_shapes()[0]
    with pytest.raises(TargetError, match="found nothing in image 0"):
        drise(detector, image, 0, masks=4)
    with pytest.raises(TargetError, match="one image"):
        drise(detector, image[None].repeat(2, 1, 1, 1), 0, masks=4)
    with pytest.raises(MethodError, match="probability"):
        drise(detector, image, 0, masks=4, probability=1.0)
    with pytest.raises(MethodError, match=">= 1"):
        drise(detector, image, 0, masks=0)
    with pytest.raises(TargetError, match="one box at a time"):
        drise(detector, image, BoxTarget(box=[(0, 0, 5, 5), (1, 1, 9, 9)], label=1), masks=4)
    with pytest.raises(TargetError, match="an index or a BoxTarget"):
        drise(detector, image, "box:0", masks=4)  # type: ignore[arg-type]


def test_box_index_out_of_range(untrained):
    image = two_shapes()[0]
    with torch.no_grad():
        count = len(untrained(image[None])[0]["boxes"])
    with pytest.raises(TargetError, match=f"found {count} boxes"):
        drise(untrained, image, count, masks=4)
