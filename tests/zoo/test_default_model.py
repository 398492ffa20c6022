"""The offline default model (real ImageNet weights) on the bundled photos: real predictions."""

from __future__ import annotations

import pytest

import cnnvis

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat

# Boxes (x0, y0, x1, y1) in the 224x224 center crop the model sees, checked by looking at it:
# the cat's face below the forehead fur; the espresso cup (without the saucer's rim).
BOXES = {"cat": (0, 30, 224, 224), "coffee": (45, 0, 195, 135)}


@pytest.fixture(scope="module")
def model():
    return cnnvis.load_model()


def test_classify_cat_and_coffee(model):
    (cat,) = cnnvis.classify(model, ["sample:cat"], top_k=5)
    assert cat[0].index in CAT_CLASSES and cat[0].name in ("Egyptian cat", "tiger cat", "tabby")
    coffee = cnnvis.classify(model, "sample:coffee", top_k=1)
    assert coffee[0].index == 967 and coffee[0].name == "espresso"
    assert coffee[0].probability > 0.9


@pytest.mark.parametrize("sample", sorted(BOXES))
def test_grad_cam_maximum_lies_on_the_object(model, sample):
    e = cnnvis.explain(model, f"sample:{sample}", "grad-cam")
    assert e.layer == "bn2"
    heat = e.map[0]
    y, x = divmod(int(heat.argmax()), heat.shape[1])
    x0, y0, x1, y1 = BOXES[sample]
    assert x0 <= x < x1 and y0 <= y < y1, (x, y)
    # and the map is not flat: the object's box is hotter than the rest of the picture
    heat = heat.clamp(min=0)
    outside = heat.clone()
    outside[y0:y1, x0:x1] = float("nan")
    assert heat[y0:y1, x0:x1].mean() > outside.nanmean()


def test_explain_by_class_name(model):
    e = cnnvis.explain(model, "sample:cat", "grad-cam", target="tabby")
    assert e.targets == [281] and e.target_names == ["tabby"]
