"""Tests for cnnvis.detection.outputs: reading detector outputs, and the IoU."""

from __future__ import annotations

import pytest
import torch
import torchvision

from cnnvis.detection import Detections, box_iou, read_detections
from cnnvis.errors import ModelError

BOXES = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 25.0]])
SCORES = torch.tensor([0.9, 0.4])
LABELS = torch.tensor([3, 7])


def _same(d: Detections, boxes=BOXES, scores=SCORES, labels=LABELS) -> bool:
    return (
        torch.equal(d.boxes, boxes)
        and torch.equal(d.scores, scores)
        and torch.equal(d.labels, labels)
        and d.labels.dtype == torch.int64
    )


def test_torchvision_list_of_dicts():
    output = [
        {"boxes": BOXES, "scores": SCORES, "labels": LABELS, "masks": torch.zeros(2, 1, 4, 4)},
        {"boxes": BOXES[:0], "scores": SCORES[:0], "labels": LABELS[:0]},
    ]
    first, second = read_detections(output)
    assert _same(first) and len(first) == 2 and len(second) == 0


def test_batch_dict_single_dict_and_tuples():
    batch = {"boxes": BOXES[None].repeat(3, 1, 1), "scores": SCORES[None].repeat(3, 1)}
    batch["labels"] = LABELS[None].repeat(3, 1).int()
    found = read_detections(batch)
    assert len(found) == 3 and all(_same(d) for d in found)
    (single,) = read_detections({"boxes": BOXES, "scores": SCORES, "labels": LABELS})
    assert _same(single)
    pair = read_detections([(BOXES, SCORES, LABELS), (BOXES, SCORES, LABELS)])
    assert len(pair) == 2 and all(_same(d) for d in pair)


def test_probabilities_give_missing_scores_and_labels():
    probabilities = torch.tensor([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]])
    (d,) = read_detections([{"boxes": BOXES, "probs": probabilities}])
    assert torch.equal(d.labels, torch.tensor([1, 0]))
    assert torch.equal(d.scores, torch.tensor([0.7, 0.6]))
    assert torch.equal(d.probabilities, probabilities)


@pytest.mark.parametrize(
    ("output", "match"),
    [
        (torch.zeros(2, 10), "a Tensor"),
        ([{"logits": torch.zeros(2, 3)}], "no 'boxes'.*'logits'"),
        ([{"boxes": torch.zeros(2, 5), "scores": SCORES, "labels": LABELS}], r"\(K, 4\)"),
        ([{"boxes": BOXES, "scores": SCORES[:1], "labels": LABELS}], "there are 2 boxes"),
        ([{"boxes": BOXES, "labels": LABELS}], "no 'scores'"),
        ([{"boxes": BOXES, "scores": [0.1, 0.2], "labels": LABELS}], "not a tensor"),
        ([torch.zeros(3)], "image 0 of the output is a Tensor"),
    ],
)
def test_outputs_that_are_not_detections(output, match):
    with pytest.raises(ModelError, match=match):
        read_detections(output)


def test_box_iou_by_hand_and_against_torchvision():
    # [0,10]^2 and [5,15]x[5,25]: overlap 5 x 5 = 25, union 100 + 200 - 25 = 275
    assert box_iou(BOXES[:1], BOXES[1:]).item() == pytest.approx(25 / 275)
    torch.manual_seed(0)
    a = torch.rand(6, 2) * 50
    a = torch.cat([a, a + torch.rand(6, 2) * 30 + 1], dim=1)
    b = torch.cat([a[:3] + 2, a[:3] + 9], dim=1)[:, [0, 1, 4, 5]]
    torch.testing.assert_close(box_iou(a, b), torchvision.ops.box_iou(a, b))
    degenerate = torch.tensor([[3.0, 3.0, 3.0, 8.0]])
    assert box_iou(degenerate, degenerate).item() == 0.0


def test_describe_names_the_boxes():
    (d,) = read_detections([{"boxes": BOXES, "scores": SCORES, "labels": LABELS}])
    names = ["c0", "c1", "c2", "cat", "c4", "c5", "c6", "dog"]
    assert d.describe(names) == "box:0 cat 0.90 (0, 0, 10, 10), box:1 dog 0.40 (5, 5, 15, 25)"
    assert d.describe(limit=1).endswith("... (2 in all)")
