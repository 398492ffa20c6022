"""Pointing games on synthetic maps, and the box file formats (JSON, CSV, masks, the bundle)."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from cnnvis.evaluate import (
    EvaluationError,
    box_mask,
    energy_pointing_game,
    load_boxes,
    pointing_game,
)
from cnnvis.evaluate.localisation import image_to_input, input_to_image
from cnnvis.model import Preprocess

SIZE = (64, 64)
BOX = (20, 20, 40, 40)  # x0, y0, x1, y1; x1, y1 excluded


def peak(y: int, x: int) -> torch.Tensor:
    m = torch.zeros(SIZE)
    m[y, x] = 1.0
    return m


def test_box_mask_is_half_open_and_clipped():
    mask = box_mask(BOX, SIZE)
    assert mask.sum() == 400 and mask[20, 20] and mask[39, 39] and not mask[40, 40]
    assert box_mask((-5, -5, 3, 2), SIZE).sum() == 6
    assert box_mask((70, 70, 90, 90), SIZE).sum() == 0


def test_pointing_game_all_inside_none_inside_and_the_tolerance():
    mask = box_mask(BOX, SIZE)
    assert pointing_game(peak(30, 30), mask) == 1.0  # inside
    assert pointing_game(peak(0, 0), mask) == 0.0  # 20 px away on both axes
    assert pointing_game(peak(30, 54), mask) == 1.0  # 15 px right of x = 39: within
    assert pointing_game(peak(30, 55), mask) == 0.0  # 16 px
    assert pointing_game(peak(30, 55), mask, tolerance=16) == 1.0
    assert pointing_game(peak(39, 39), mask, tolerance=0) == 1.0  # the last pixel inside
    assert pointing_game(peak(40, 39), mask, tolerance=0) == 0.0
    assert pointing_game(peak(30, 30), torch.zeros(SIZE, dtype=torch.bool)) == 0.0


def test_pointing_game_diagonal_distance_is_euclidean():
    mask = box_mask(BOX, SIZE)
    assert pointing_game(peak(50, 50), mask) == 0.0  # (11, 11) from (39, 39): 15.6 > 15
    assert pointing_game(peak(49, 49), mask) == 1.0  # (10, 10): 14.1


def test_pointing_game_takes_the_first_maximum():
    mask = box_mask(BOX, SIZE)
    both = peak(0, 0) + peak(30, 30)  # a tie: the first in row-major order, outside
    assert pointing_game(both, mask) == 0.0


def test_energy_pointing_game_all_half_none():
    mask = box_mask(BOX, SIZE)
    inside = torch.zeros(SIZE)
    inside[25:35, 25:35] = 2.0
    assert energy_pointing_game(inside, mask) == pytest.approx(1.0)
    assert energy_pointing_game(peak(0, 0), mask) == 0.0
    half = torch.zeros(SIZE)
    half[25:35, 30:50] = 1.0  # columns 30-39 inside, 40-49 outside
    assert energy_pointing_game(half, mask) == pytest.approx(0.5)
    assert energy_pointing_game(torch.ones(SIZE), mask) == pytest.approx(400 / 4096)
    negative = -torch.ones(SIZE)  # no positive mass
    assert energy_pointing_game(negative, mask) == 0.0
    negative[30, 30] = 1.0  # negative values do not count
    assert energy_pointing_game(negative, mask) == pytest.approx(1.0)


def test_json_boxes_classes_and_lookup(tmp_path):
    data = {
        "images": {
            "photos/dog.jpg": [{"label": "dog", "box": [0, 0, 10, 10], "classes": [207]}],
            "sample:cat": {"objects": [{"label": "cat", "box": [5, 5, 15, 15]}]},
        }
    }
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(data))
    boxes = load_boxes(path)
    pre = Preprocess(resize_size=32, crop_size=32)
    assert boxes.object_mask("photos/dog.jpg", 207, pre, None, (32, 32)).sum() == 100
    assert boxes.object_mask("elsewhere/dog.jpg", 207, pre, None, (32, 32)).sum() == 100
    assert boxes.object_mask("dog.png", 207, pre, None, (32, 32)) is not None  # by stem
    assert boxes.object_mask("photos/dog.jpg", 208, pre, None, (32, 32)) is None  # other class
    assert boxes.object_mask("sample:cat", 3, pre, None, (32, 32)).sum() == 100  # any class
    assert boxes.object_mask("sample:dog", 3, pre, None, (32, 32)) is None


def test_csv_boxes_and_masks(tmp_path):
    mask = Image.new("L", (16, 16), 0)
    mask.paste(255, (0, 0, 4, 8))
    mask.save(tmp_path / "m.png")
    (tmp_path / "boxes.csv").write_text(
        "image,label,x0,y0,x1,y1,classes,mask\na.jpg,cup,0,0,8,8,967 968,\na.jpg,spoon,,,,,,m.png\n"
    )
    boxes = load_boxes(tmp_path / "boxes.csv")
    pre = Preprocess(resize_size=16, crop_size=16)
    assert boxes.lookup("a.jpg")[0].classes == (967, 968)
    found = boxes.object_mask("a.jpg", 967, pre, None, (16, 16))
    assert found.sum() == 64  # the box; the mask (any class) is inside it
    assert boxes.object_mask("a.jpg", 1, pre, None, (16, 16)).sum() == 32  # the mask alone
    with pytest.raises(EvaluationError, match="16x16"):
        boxes.object_mask("a.jpg", 1, pre, None, (8, 8))


def test_bad_box_files(tmp_path):
    with pytest.raises(EvaluationError, match="not found"):
        load_boxes(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(EvaluationError, match="cannot read"):
        load_boxes(bad)
    with pytest.raises(EvaluationError, match="empty box"):
        load_boxes({"images": {"a": [{"box": [5, 5, 5, 9]}]}})
    with pytest.raises(EvaluationError, match=r"box.*mask"):
        load_boxes({"images": {"a": [{"label": "x"}]}})
    with pytest.raises(EvaluationError, match="space"):
        load_boxes({"space": "world", "images": {}})


def test_image_space_round_trip_and_mapping():
    pre = Preprocess(resize_size=256, crop_size=224)
    size = (451, 300)  # sample:cat: resized to 384 x 256, cropped at (80, 16)
    assert image_to_input((0, 0), pre, size) == pytest.approx((-80, -16))
    for point in [(0.0, 0.0), (120.5, 33.0), (451.0, 300.0)]:
        back = input_to_image(image_to_input(point, pre, size), pre, size)
        assert back == pytest.approx(point)
    boxes = load_boxes({"space": "image", "images": {"x": [{"box": [0, 0, 451, 300]}]}})
    assert boxes.object_mask("x", 0, pre, size, (224, 224)).all()
    with pytest.raises(EvaluationError, match="original image size"):
        boxes.object_mask("x", 0, pre, None, (224, 224))


def test_bundled_boxes_cover_the_samples_and_follow_other_preprocessing():
    boxes = load_boxes(None)
    default = Preprocess(resize_size=256, crop_size=224, mean=(0.5,) * 3, std=(0.5,) * 3)
    sizes = {"cat": (451, 300), "coffee": (600, 400), "rocket": (640, 427)}
    sizes.update({"motorcycle": (741, 500), "astronaut": (512, 512), "camera": (512, 512)})
    classes = {"cat": 285, "coffee": 967, "rocket": 657, "motorcycle": 665, "astronaut": 450}
    classes["camera"] = 872  # tripod
    for name, size in sizes.items():
        mask = boxes.object_mask(f"sample:{name}", classes[name], default, size, (224, 224))
        assert mask is not None and 0 < mask.sum() <= 224 * 224
    rocket = boxes.object_mask("sample:rocket", 657, default, sizes["rocket"], (224, 224))
    ys, xs = torch.nonzero(rocket, as_tuple=True)
    assert (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) == (
        105,
        60,
        121,
        224,
    )
    bigger = Preprocess(resize_size=320, crop_size=288)  # the same rocket, another crop
    moved = boxes.object_mask("sample:rocket", 657, bigger, sizes["rocket"], (288, 288))
    ys, xs = torch.nonzero(moved, as_tuple=True)
    assert int(xs.min()) == pytest.approx(105 * 1.25 + 4, abs=1)
