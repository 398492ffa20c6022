"""`cnnvis explain --target box:N` on a detector: the detections printed and drawn (every box
with its label and score, the explained one highlighted), a detector that finds nothing said
plainly with nothing drawn, and the bad inputs of box targets, each a typed error."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image
from scenes import CLASSES, trained_detector, two_shapes

import cnnvis
from cnnvis.cli import explain as explain_command
from cnnvis.cli.main import main
from cnnvis.detection import BoxTarget, detect
from cnnvis.errors import TargetError
from cnnvis.model import LoadedModel, Preprocess
from cnnvis.render import detections_figure
from cnnvis.render.detections import box_label

GREY = Preprocess(resize_size=64, crop_size=64, mean=(0.0,) * 3, std=(1.0,) * 3)


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    return LoadedModel(trained_detector(), "tiny-detector", preprocess=GREY,
                       categories=list(CLASSES), task="detection")  # fmt: skip


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory):
    image, _, _ = two_shapes()
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy()).save(path)
    return path


def _explain(monkeypatch, capsys, model, argv):
    monkeypatch.setattr(explain_command, "load_model", lambda args: model)
    code = main(["explain", *argv])
    return code, capsys.readouterr()


def test_cli_prints_and_draws_the_detections_with_the_explained_box(
    monkeypatch, capsys, tmp_path, tiny, scene_file
):
    out = tmp_path / "out"
    argv = [str(scene_file), "--target", "box:1", "--method", "grad-cam", "--layer",
            "features.10", "--out", str(out)]  # fmt: skip
    code, said = _explain(monkeypatch, capsys, tiny, argv)
    assert code == 0, said.err
    assert re.search(
        r"2 detections: box:0 square 0\.\d\d \(6, 8, 24, 26\), box:1 \w+ 0\.", said.out
    )
    assert "explaining box:1" in said.out and "explained detection box:1" in said.out
    picture = np.asarray(Image.open(out / "scene" / "detections.png").convert("RGB")).astype(int)
    yellow = (picture[..., 0] > 230) & (picture[..., 1] > 190) & (picture[..., 2] < 60)
    cyan = (picture[..., 0] < 60) & (picture[..., 1] > 200) & (picture[..., 2] > 230)
    ys, xs = yellow.nonzero()
    assert yellow.sum() > 200 and cyan.sum() > 100  # the highlighted box and the other one
    # the highlight (the disc, bottom right of the scene) lies right of and below the other box
    cy, cx = cyan.nonzero()
    assert np.median(xs) > np.median(cx) and np.median(ys) > np.median(cy)


def test_a_detector_that_finds_nothing_is_said_plainly_and_nothing_drawn(
    monkeypatch, capsys, tmp_path, tiny, scene_file
):
    blind = LoadedModel(trained_detector(), "tiny", preprocess=GREY, task="detection")
    blind.module = _Blind(blind.module)
    out = tmp_path / "out"
    argv = [str(scene_file), "--target", "box:0", "--method", "gradient", "--out", str(out)]
    code, said = _explain(monkeypatch, capsys, blind, argv)
    assert code == TargetError.exit_code
    assert "found nothing in image 0" in said.err and "Traceback" not in said.err
    assert not list(out.rglob("*.png"))


class _Blind(torch.nn.Module):
    """The trained detector with a score threshold no box reaches."""

    def __init__(self, detector: torch.nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return [{k: v[:0] for k, v in found.items()} for found in self.detector(x)]


def test_the_library_figure_draws_boxes_labels_and_the_map(tiny):
    image, _, _ = two_shapes()
    (found,) = detect(tiny, image[None])
    e = cnnvis.explain(tiny, image[None], "gradient", target="box:0")
    fig = detections_figure(image, found, 0, categories=list(CLASSES), map2d=e.map[0])
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    names = [box_label(found, i, list(CLASSES)) for i in (1, 0, 0)]
    assert texts == names and texts[1].startswith("box:0 square 0.6")
    patches = [p.get_linewidth() for ax in fig.axes for p in ax.patches]
    assert patches == [1.2, 3, 3]  # the other box thin, the explained one thick, twice


def test_a_box_index_out_of_range_names_how_many_boxes(tiny):
    image, _, _ = two_shapes()
    with pytest.raises(TargetError, match=r"box index 5 is out of range: the detector found 2 "
                       r"boxes in image 0 \(box:0 to box:1\)"):  # fmt: skip
        cnnvis.explain(tiny, image[None], "grad-cam", "features.10", "box:5")


def test_a_callable_target_of_the_wrong_shape_says_the_shape_expected(tiny):
    image, _, _ = two_shapes()
    with pytest.raises(TargetError, match=r"shape \(2,\); expected shape \(1,\)"):
        cnnvis.explain(tiny, image[None], "gradient", target=lambda out: out[0]["scores"])
    with pytest.raises(TargetError, match="returned list"):
        cnnvis.explain(tiny, image[None], "gradient", target=lambda out: [1.0])


def test_a_user_box_matching_nothing_says_what_was_found(tiny):
    image, _, _ = two_shapes()
    target = BoxTarget(box=(0.0, 40.0, 16.0, 60.0), label=1)
    with pytest.raises(TargetError, match="no detection of label 1 overlaps the box"):
        cnnvis.explain(tiny, image[None], "gradient", target=target)
