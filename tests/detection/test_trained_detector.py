"""On a tiny detector trained on synthetic scenes (it really detects the shapes): D-RISE and the
gradient of the BoxTarget score put their mass inside the explained box, and explaining the
other box moves the map to the other shape."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from scenes import DISC, SIZE, SQUARE, trained_detector, two_shapes

from cnnvis.detection import BoxTarget, box_iou, drise, read_detections


@pytest.fixture(scope="module")
def scene():
    """(detector, image, ground-truth boxes, the index of the detection of each shape)."""
    detector = trained_detector()
    image, boxes, labels = two_shapes()
    with torch.no_grad():
        (found,) = read_detections(detector(image[None]))
    ious = box_iou(boxes, found.boxes)
    index = ious.argmax(dim=1).tolist()
    return detector, image, boxes, labels, found, index, ious


def _energy_in(heat: torch.Tensor, box: torch.Tensor) -> float:
    """The share of a non-negative map's mass inside a box."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return float(heat[y0:y1, x0:x1].sum() / heat.sum())


def _share(box: torch.Tensor) -> float:
    return float((box[2] - box[0]) * (box[3] - box[1])) / SIZE**2


def test_the_detector_really_detects_both_shapes(scene):
    _, _, boxes, labels, found, index, ious = scene
    assert index[0] != index[1]
    for shape in range(2):
        assert float(ious[shape, index[shape]]) > 0.6
        assert int(found.labels[index[shape]]) == int(labels[shape])
        assert float(found.scores[index[shape]]) > 0.5
    assert labels.tolist() == [SQUARE, DISC]


def _smooth_random_share(box: torch.Tensor, count: int = 20) -> float:
    """The mean energy-in-box of random maps as smooth as D-RISE's (4 x 4 noise upsampled)."""
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand(count, 1, 4, 4, generator=generator)
    maps = F.interpolate(noise, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0]
    return sum(_energy_in((m - m.mean()).clamp(min=0), box) for m in maps) / count


def test_drise_lands_on_the_explained_shape_and_moves_with_it(scene):
    detector, image, boxes, _, _, index, _ = scene
    for shape, other in ((0, 1), (1, 0)):
        saliency = drise(detector, image, index[shape], masks=500, grid=4, seed=0)
        # D-RISE maps carry a constant offset (mean weight x mean mask): mass above the mean
        heat = (saliency - saliency.mean()).clamp(min=0)
        inside = _energy_in(heat, boxes[shape])
        assert inside > 2.5 * _share(boxes[shape]), (shape, inside)
        assert inside > 2 * _smooth_random_share(boxes[shape])
        assert inside > 5 * _energy_in(heat, boxes[other]) + 1e-3, shape
        y, x = divmod(int(saliency.argmax()), SIZE)
        x0, y0, x1, y1 = boxes[shape].tolist()
        assert x0 - 6 <= x < x1 + 6 and y0 - 6 <= y < y1 + 6  # the peak is on (or by) the shape


def test_box_score_gradient_lands_on_the_explained_shape(scene):
    detector, image, boxes, _, _, index, _ = scene
    for shape, other in ((0, 1), (1, 0)):
        x = image[None].clone().requires_grad_(True)
        score = BoxTarget(index[shape]).scores(detector(x), {})
        (grad,) = torch.autograd.grad(score.sum(), x)
        heat = grad[0].abs().sum(dim=0)
        inside = _energy_in(heat, boxes[shape])
        assert inside > 5 * _share(boxes[shape]), (shape, inside)
        assert inside > 5 * _energy_in(heat, boxes[other])


def test_a_user_box_on_the_disc_explains_the_disc(scene):
    detector, image, boxes, labels, _, index, _ = scene
    user = BoxTarget(box=boxes[1] + torch.tensor([1.0, -1.0, 1.0, -1.0]), label=int(labels[1]))
    x = image[None].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(user.scores(detector(x), {}).sum(), x)
    heat = grad[0].abs().sum(dim=0)
    assert _energy_in(heat, boxes[1]) > 5 * _energy_in(heat, boxes[0])
    with torch.no_grad():
        bound = user.bind(detector(image[None]))
    by_index = drise(detector, image, index[1], masks=64, grid=4, seed=1)
    by_box = drise(detector, image, bound, masks=64, grid=4, seed=1)
    assert torch.corrcoef(torch.stack([by_index.flatten(), by_box.flatten()]))[0, 1] > 0.9
