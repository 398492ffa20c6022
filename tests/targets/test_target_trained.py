"""Targets on tiny models trained here on synthetic scenes (a square and a disc on a textured
background, see `scenes.py`): the maps must land on the object the target names.

Measured (seeded, 200 training steps, 8-16 test scenes; area share of an object about 0.08-0.1):
mask Grad-CAM energy inside the object 0.36-0.87 per image, the gradient 0.45-0.69; multi-label
Grad-CAM 0.58-0.63; similarity Grad-CAM 0.55-0.64 on the shared square and 0.0 on the disc.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from target_scenes import DISC, SQUARE, energy_inside, scenes, train_multilabel, train_segmenter

import cnnvis
from cnnvis.targets import MaskTarget, Similarity

LAYER = "backbone.4"


@pytest.fixture(scope="module")
def segmenter():
    return train_segmenter(steps=200, seed=0)


@pytest.fixture(scope="module")
def both():
    """Test scenes with both shapes, unseen in training."""
    return scenes(8, seed=99_999, present=(True, True))


def area(masks: torch.Tensor) -> torch.Tensor:
    return masks.flatten(1).float().mean(1).double()


def test_the_segmenter_really_segments(segmenter, both):
    with torch.no_grad():
        predicted = segmenter(both.pictures)["out"].argmax(1)
    for kind in (SQUARE, DISC):
        found = predicted == kind
        iou = (found & both.masks[kind]).sum() / (found | both.masks[kind]).sum()
        assert iou > 0.85, kind


@pytest.mark.parametrize("kind", [SQUARE, DISC])
@pytest.mark.parametrize("method", ["grad-cam", "gradient"])
def test_a_mask_targets_map_concentrates_on_the_masked_object(segmenter, both, kind, method):
    ex = cnnvis.explain(segmenter, both.pictures, method, LAYER, target=f"mask:{kind}")
    maps = ex.map if ex.map.dim() == 3 else ex.map.abs().sum(1)
    inside = energy_inside(maps, both.masks[kind])
    other = energy_inside(maps, both.masks[SQUARE + DISC - kind])
    assert (inside > 3 * area(both.masks[kind])).all(), (inside, area(both.masks[kind]))
    assert (inside > 2 * other).all()
    assert ex.target_names == [f"mask:{kind}"] * len(both.pictures) and ex.predictions is None


def test_a_box_or_a_user_mask_selects_the_object(segmenter, both):
    image = both.pictures[:1]
    box = tuple(int(v) for v in both.boxes[DISC][0])
    by_box = cnnvis.explain(segmenter, image, "grad-cam", LAYER, target=MaskTarget(DISC, box=box))
    by_mask = cnnvis.explain(
        segmenter, image, "grad-cam", LAYER, target=MaskTarget(DISC, mask=both.masks[DISC][0])
    )
    for ex in (by_box, by_mask):
        assert energy_inside(ex.map, both.masks[DISC][:1]) > 3 * area(both.masks[DISC][:1])


def test_an_absent_class_is_a_target_error(segmenter):
    only_square = scenes(1, seed=5, present=(True, False))
    with pytest.raises(cnnvis.TargetError, match="absent from the model's prediction"):
        cnnvis.explain(segmenter, only_square.pictures, "grad-cam", LAYER, target="mask:2")


def test_mask_grad_cam_matches_pytorch_grad_cam_semantic_segmentation_target(segmenter, both):
    """pytorch-grad-cam's recipe: the model wrapped to return out["out"], the target
    `SemanticSegmentationTarget(category, mask)` = Σ out[c] · mask with the predicted region,
    GradCAM at the same layer; its output is ReLU, min-max, cv2 bilinear resize, min-max.
    Compared to min-max(bilinear(ReLU(cnnvis' layer map)))."""
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    x = both.pictures
    ours = cnnvis.explain(segmenter, x, "grad-cam", LAYER, target="mask:1").layer_map
    ours = F.interpolate(ours.clamp(min=0)[:, None], size=x.shape[-2:], mode="bilinear")[:, 0]
    ours = ours - ours.flatten(1).amin(1).view(-1, 1, 1)
    ours = ours / ours.flatten(1).amax(1).view(-1, 1, 1)

    class Wrapped(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x)["out"]

    model = copy.deepcopy(segmenter)  # it calls .backward() and fills .grad
    with torch.no_grad():
        regions = (model(x)["out"].argmax(1) == 1).float().numpy()
    targets = [SemanticSegmentationTarget(1, region) for region in regions]
    with GradCAM(model=Wrapped(model), target_layers=[model.backbone[4]]) as extractor:
        theirs = torch.from_numpy(extractor(x, targets=targets))
    a = ours.flatten(1).double() - ours.flatten(1).double().mean(1, keepdim=True)
    b = theirs.flatten(1).double() - theirs.flatten(1).double().mean(1, keepdim=True)
    correlation = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    assert (correlation >= 0.999).all(), correlation


def test_each_labels_map_lands_on_its_object(both):
    model = train_multilabel(steps=200, seed=0)
    with torch.no_grad():
        check = scenes(32, seed=777)
        assert ((model(check.pictures) > 0).float() == check.labels).float().mean() > 0.95
    for label, kind in ((0, SQUARE), (1, DISC)):
        ex = cnnvis.explain(model, both.pictures, "grad-cam", LAYER, target=f"labels:{label}")
        inside = energy_inside(ex.map, both.masks[kind])
        other = energy_inside(ex.map, both.masks[SQUARE + DISC - kind])
        assert (inside > 3 * area(both.masks[kind])).all(), (label, inside)
        assert (inside > 2 * other).all()
    together = cnnvis.explain(model, both.pictures, "grad-cam", LAYER, target="labels:0,1")
    covered = energy_inside(together.map, both.masks[SQUARE] | both.masks[DISC])
    assert (covered > 0.5).all()


def test_a_similarity_map_lands_on_the_shared_shape(segmenter, both):
    """The reference holds a square alone (elsewhere); the query a square and a disc: the map
    of cos(embedding(query), embedding(reference)) at the backbone lands on the square."""
    reference = scenes(1, seed=5353, present=(True, False)).pictures[0]
    for layer in (None, LAYER):
        target = Similarity(reference, layer=layer)
        ex = cnnvis.explain(segmenter, both.pictures, "grad-cam", LAYER, target=target)
        square = energy_inside(ex.map, both.masks[SQUARE])
        disc = energy_inside(ex.map, both.masks[DISC])
        assert (square > 3 * area(both.masks[SQUARE])).all(), (layer, square)
        assert (square > 2 * disc).all(), (layer, square, disc)
