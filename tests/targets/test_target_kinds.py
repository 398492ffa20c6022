"""Each target's scores by hand on tiny models, their spelling, and the engine running them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnvis
from cnnvis.capture import record
from cnnvis.targets import (
    CallableTarget,
    ClassTarget,
    MaskTarget,
    MultiLabel,
    PerImage,
    Regression,
    Similarity,
    UnitTarget,
    as_target,
    parse_target,
)

LOGITS = torch.tensor([[0.5, 2.0, -1.0], [3.0, 0.0, 1.0]], dtype=torch.float64)


class Linear(nn.Module):
    """y = W x on a flattened (N, 2, 1, 1) input, float64: every score by hand."""

    def __init__(self, weight: list[list[float]]):
        super().__init__()
        self.fc = nn.Linear(2, len(weight), bias=False).double()
        self.fc.weight.data = torch.tensor(weight, dtype=torch.float64)

    def forward(self, x):
        return self.fc(x.flatten(1))


class Segmenter(nn.Module):
    """A 1x1 convolution (identity) from 2 channels to 2 classes and a ReLU, returning
    {"out": (N, 2, H, W)}."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1, bias=False).double()
        self.conv.weight.data = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).double()[:, :, None, None]

    def forward(self, x):
        return {"out": torch.relu(self.conv(x))}


def test_class_scores_logit_softmax_log_softmax_by_hand():
    target = ClassTarget(torch.tensor([1, 2]))
    assert target.scores(LOGITS, {}).tolist() == [2.0, 1.0]
    p = torch.exp(LOGITS) / torch.exp(LOGITS).sum(1, keepdim=True)
    soft = ClassTarget(torch.tensor([1, 2]), "softmax").scores(LOGITS, {})
    assert torch.allclose(soft, torch.stack([p[0, 1], p[1, 2]]))
    log = ClassTarget(torch.tensor([1, 2]), "log_softmax").scores(LOGITS, {})
    assert torch.allclose(log, soft.log())
    assert ClassTarget().scores(LOGITS, {}).tolist() == [2.0, 3.0]  # top-1
    with pytest.raises(cnnvis.TargetError, match="logit, softmax, log_softmax"):
        ClassTarget(1, "probability")


@pytest.mark.parametrize("score", ["softmax", "log_softmax"])
def test_softmax_targets_gradient_is_hand_written_autograd(score):
    torch.manual_seed(0)
    model = Linear([[1.0, -2.0], [0.5, 3.0], [-1.0, 0.25]])
    x = torch.randn(3, 2, 1, 1, dtype=torch.float64)
    target = ClassTarget([2, 0, 1], score)
    ours = cnnvis.explain(model, x, "gradient", target=target).map
    leaf = x.clone().requires_grad_(True)
    logits = leaf.flatten(1) @ model.fc.weight.T
    probs = torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True)
    chosen = probs[torch.arange(3), torch.tensor([2, 0, 1])]
    y = chosen if score == "softmax" else torch.log(chosen)
    (expected,) = torch.autograd.grad(y.sum(), leaf)
    assert torch.allclose(ours.double(), expected, atol=1e-12)
    plain = cnnvis.explain(model, x, "gradient", target=[2, 0, 1]).map
    assert not torch.allclose(ours, plain)  # the score really changed


def test_multilabel_regression_unit_and_callable_by_hand():
    labels = MultiLabel((0, 2))
    expected = torch.sigmoid(LOGITS[:, 0]) + torch.sigmoid(LOGITS[:, 2])
    assert torch.allclose(labels.scores(LOGITS, {}), expected)
    assert MultiLabel((0, 2), "logit").scores(LOGITS, {}).tolist() == [-0.5, 4.0]
    assert Regression(1).scores(LOGITS, {}).tolist() == [2.0, 0.0]
    assert Regression(0).scores(torch.tensor([1.5, -2.0]), {}).tolist() == [1.5, -2.0]
    with pytest.raises(cnnvis.TargetError, match="out of range"):
        Regression(3).scores(LOGITS, {})
    act = torch.arange(2 * 3 * 2 * 2, dtype=torch.float64).view(2, 3, 2, 2)
    unit = UnitTarget("layer", 1)
    assert unit.scores(None, {"layer": act}).tolist() == [4 + 5 + 6 + 7, 16 + 17 + 18 + 19]
    assert unit.scores(act).tolist() == unit.scores(None, {"layer": act}).tolist()
    assert CallableTarget(lambda out: out[:, 0] - out[:, 2]).scores(LOGITS, {}).tolist() == [
        1.5,
        2.0,
    ]


def test_mask_target_predicted_region_user_mask_and_box_by_hand():
    out = torch.zeros(1, 2, 2, 3, dtype=torch.float64)
    out[0, 0] = torch.tensor([[1.0, 5.0, 0.0], [2.0, 0.0, 0.0]])
    out[0, 1] = torch.tensor([[3.0, 1.0, 4.0], [0.0, 1.0, 2.0]])
    from cnnvis.targets import Context

    context = Context(rows=1)
    # class 1 wins at (0,0), (0,2), (1,1), (1,2): 3 + 4 + 1 + 2
    bound = MaskTarget(1).bind({"out": out}, {}, context)
    assert bound.scores({"out": out}, {}).tolist() == [10.0]
    mask = torch.tensor([[True, True, False], [False, False, False]])
    assert MaskTarget(0, mask=mask).bind(out, {}, context).scores(out, {}).tolist() == [6.0]
    box = MaskTarget(1, box=(1, 0, 3, 2)).bind(out, {}, context)  # x 1..2, y 0..1
    assert box.scores(out, {}).tolist() == [1.0 + 4.0 + 1.0 + 2.0]
    with pytest.raises(cnnvis.TargetError, match="absent from the model's prediction"):
        MaskTarget(0).bind(torch.cat([out[:, :1] - 10, out[:, 1:]], 1), {}, context)
    with pytest.raises(cnnvis.TargetError, match="not inside"):
        MaskTarget(1, box=(0, 0, 9, 1)).bind(out, {}, context)
    with pytest.raises(cnnvis.TargetError, match="segmentation output"):
        MaskTarget(1).bind(LOGITS, {}, context)


def test_similarity_to_a_vector_by_hand_and_to_an_image():
    emb = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    target = Similarity(torch.tensor([1.0, 1.0], dtype=torch.float64))
    assert torch.allclose(target.scores(emb, {}), torch.tensor([2**-0.5, 1.0]).double())
    model = Linear([[1.0, 0.0], [0.0, 1.0]])  # the embedding is the input itself
    x = torch.tensor([[3.0, 4.0], [1.0, 0.0]], dtype=torch.float64).view(2, 2, 1, 1)
    reference = torch.tensor([0.0, 2.0], dtype=torch.float64).view(2, 1, 1)  # an "image"
    rec = record(model, x, target=Similarity(reference))
    assert torch.allclose(rec.scores.detach(), torch.tensor([0.8, 0.0]).double())
    with pytest.raises(cnnvis.TargetError, match="dimensions"):
        record(model, x, target=Similarity(torch.ones(3)))


def test_spellings_parse_to_the_right_objects():
    assert parse_target("top1") is None and parse_target("285") == 285
    assert parse_target("tabby") == "tabby"
    assert parse_target("layer4:17") == UnitTarget("layer4", 17, "sum")
    assert parse_target("mask:15") == MaskTarget(15)
    assert parse_target("mask:person") == MaskTarget("person")
    assert parse_target("labels:3,7") == MultiLabel((3, 7))
    assert parse_target("labels:cat,dog@logit") == MultiLabel(("cat", "dog"), "logit")
    assert parse_target("regression:0") == Regression(0)
    assert parse_target("class:285") == 285 and parse_target("class:tabby") == "tabby"
    assert parse_target("similar:other.jpg") == Similarity("other.jpg")
    assert parse_target("tabby@softmax") == ClassTarget("tabby", "softmax")
    assert parse_target("285@log_softmax") == ClassTarget(285, "log_softmax")
    for bad in ("labels:", "mask:", "regression:x", "foo:bar", "tabby@prob", "similar:"):
        with pytest.raises(cnnvis.TargetError, match="mask:15"):
            parse_target(bad)
    assert as_target("layer4:17@max") == UnitTarget("layer4", 17, "max")
    assert as_target(3) == ClassTarget(3) and as_target(None) == ClassTarget(None)
    mixed = as_target(["tabby", "layer4:17", None, "top1", "layer4:17"])
    assert isinstance(mixed, PerImage) and mixed.owner.tolist() == [0, 1, 2, 2, 1]
    assert isinstance(as_target(lambda out: out[:, 0]), CallableTarget)


def test_a_mixed_per_image_list_scores_each_row_by_its_own_target(tiny_cnn, tiny_input):
    x = tiny_input  # three images
    rec = record(tiny_cnn, x, ["conv2"], target=[1, "conv2:3@max", None])
    logits = rec.logits.detach()
    act = rec.activations["conv2"].detach()
    expected = [logits[0, 1], act[1, 3].max(), logits[2].max()]
    assert torch.allclose(rec.scores.detach(), torch.stack(expected))
    ex = cnnvis.explain(tiny_cnn, x, "grad-cam", "conv2", target=[1, "conv2:3@max", None])
    assert ex.targets[0] == 1 and ex.targets[1] == -1 and ex.targets[2] == int(logits[2].argmax())
    assert ex.target_names[1] == "conv2:3@max"
    alone = cnnvis.explain(tiny_cnn, x[1:2], "grad-cam", "conv2", target="conv2:3@max")
    assert torch.allclose(ex.map[1], alone.map[0], atol=1e-6)  # each row its own gradient


def test_explain_with_a_unit_string_on_resnet18():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    by_string = cnnvis.explain(model, x, "grad-cam", "layer3", target="layer4:17")
    by_object = cnnvis.explain(model, x, "grad-cam", "layer3", target=UnitTarget("layer4", 17))
    assert torch.equal(by_string.map, by_object.map) and by_string.map.abs().sum() > 0
    assert by_string.target_names == ["layer4:17@sum"] and by_string.targets == [-1]


def test_a_callable_of_the_wrong_shape_is_a_target_error(tiny_cnn, tiny_input):
    with pytest.raises(cnnvis.TargetError, match=r"shape \(3, 5\); expected shape \(3,\)"):
        cnnvis.explain(tiny_cnn, tiny_input, "gradient", target=lambda out: out)
    ours = cnnvis.explain(tiny_cnn, tiny_input, "gradient", target=lambda out: out[:, 1]).map
    assert torch.equal(ours, cnnvis.explain(tiny_cnn, tiny_input, "gradient", target=1).map)


def test_every_method_runs_on_a_segmenter_or_says_why():
    torch.manual_seed(0)
    model = Segmenter()
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    failures: dict[str, cnnvis.CnnvisError] = {}
    names = [m.name for m in cnnvis.list_methods()]
    params = {
        "rise": {"masks": 20},
        "smoothgrad": {"samples": 2},
        "occlusion": {"window": 2, "stride": 1},
    }
    results = cnnvis.explain_many(
        model, x, names, "conv", target="mask:1", failures=failures, params=params
    )
    assert set(failures) == {"cam", "drise"} and "linear head" in str(failures["cam"])
    assert "box" in str(failures["drise"])  # D-RISE explains a detected box
    assert {m for m, _ in results} == set(names) - {"cam", "drise"}
    assert all(torch.isfinite(r.map).all() for r in results.values())
    region = model(x)["out"].argmax(1) == 1
    gradient = results[("gradient", None)].map
    # score = Σ_region relu(x[1]), x[1] > 0 on the region: the gradient is the region
    assert torch.equal(gradient[0, 1] != 0, region[0]) and not gradient[0, 0].any()


def test_evaluation_refuses_a_target_that_is_not_a_class(tiny_cnn, tiny_input):
    from cnnvis.evaluate import EvaluationError

    with pytest.raises(EvaluationError, match="scores a class's probability"):
        cnnvis.evaluate(tiny_cnn, tiny_input[:1], "gradient", ["deletion"], target="conv2:3")


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("integrated-gradients", {"steps": 8, "batch_size": 5}),
        ("smoothgrad", {"samples": 3, "batch_size": 4}),
        ("occlusion", {"window": 8, "stride": 8, "batch_size": 3}),
        ("score-cam", {"batch_size": 7}),
    ],
)
def test_multi_pass_methods_give_each_row_its_own_target(tiny_cnn, tiny_input, method, params):
    """Extra rows (path points, noisy copies, occluded and masked images) take their image's
    target (`take`): the batch with mixed targets equals each image explained alone."""
    torch.manual_seed(0)
    targets = [1, "conv2:3@max", Similarity(torch.randn(5))]
    layer = "conv2" if method == "score-cam" else None
    batch = cnnvis.explain(tiny_cnn, tiny_input, method, layer, target=targets, **params).map
    for i, target in enumerate(targets):
        alone = cnnvis.explain(
            tiny_cnn, tiny_input[i : i + 1], method, layer, target=target, **params
        )
        assert torch.allclose(batch[i], alone.map[0], atol=1e-5, rtol=1e-4), (method, i)


def test_integrated_gradients_of_a_mask_target_is_complete():
    """score = Σ_region relu(x_1) is linear along the path from zero on the region (x_1 > 0):
    the attributions sum to the score exactly."""
    torch.manual_seed(0)
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    ex = cnnvis.explain(Segmenter(), x, "integrated-gradients", target="mask:1", baseline="zeros")
    assert max(ex.params["completeness_error"]) < 1e-9
    region = torch.relu(x[:, 1]) > torch.relu(x[:, 0])
    assert torch.allclose(ex.map.sum((1, 2, 3)), (torch.relu(x[:, 1]) * region).sum((1, 2)))


def test_a_target_whose_bind_takes_the_output_alone_is_bound(tiny_cnn, tiny_input):
    class Chosen:
        """Binds to each image's lowest class (a target written against `bind(output)`)."""

        def __init__(self, classes=None):
            self.classes = classes

        def bind(self, output):
            return Chosen(output.detach().argmin(1))

        def scores(self, output, activations=None):
            return output.gather(1, self.classes[:, None]).squeeze(1)

    rec = record(tiny_cnn, tiny_input, target=Chosen())
    assert torch.equal(rec.scores.detach(), rec.logits.detach().amin(1))
