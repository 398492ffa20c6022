"""The public API: classify, explain, explain_many, sweep."""

from __future__ import annotations

import pytest
import torch

import cnnvis


def test_sweep_equals_one_explain_per_layer(tiny_cnn, tiny_input):
    sweep = cnnvis.sweep(tiny_cnn, tiny_input, "guided-grad-cam", layers="all")
    assert sweep.layers == ["conv1", "relu1", "conv2", "relu2"]
    assert sweep.shapes["conv2"] == (1, 8, 8, 8)
    for layer in sweep.layers:
        alone = cnnvis.explain(tiny_cnn, tiny_input, "guided-grad-cam", layer=layer)
        assert torch.allclose(sweep[layer].map, alone.map, atol=1e-7), layer


def test_sweep_of_a_pixel_method_is_refused(tiny_cnn, tiny_input):
    with pytest.raises(cnnvis.MethodError, match="does not depend on a layer"):
        cnnvis.sweep(tiny_cnn, tiny_input, "gradient")


def test_explain_many_shares_one_forward(tiny_cnn, tiny_input, monkeypatch):
    calls = []
    original = tiny_cnn.forward
    monkeypatch.setattr(tiny_cnn, "forward", lambda x: calls.append(1) or original(x))
    methods = ["gradient", "guided-backprop", "deconvnet", "grad-cam", "guided-grad-cam", "cam"]
    cnnvis.layers.probe(tiny_cnn, (1, 3, 16, 16))  # the default-layer probe, cached
    calls.clear()
    results = cnnvis.explain_many(tiny_cnn, tiny_input, methods)
    assert len(calls) == 1
    assert {m for m, _ in results} == set(methods)


def test_explanation_metadata(tiny_cnn, tiny_input):
    e = cnnvis.explain(tiny_cnn, tiny_input, "grad-cam", target=[0, 1, 2])
    assert e.targets == [0, 1, 2] and e.layer == "relu2"
    probs = torch.softmax(tiny_cnn(tiny_input), 1)
    assert e.probabilities == pytest.approx([probs[i, i].item() for i in range(3)], rel=1e-5)
    assert e.images.shape == (3, 3, 16, 16) and e.images.min() >= 0 and e.images.max() <= 1
    assert e[1].map.shape == (1, 16, 16) and e[1].targets == [1]
    assert e.target_names == ["class 0", "class 1", "class 2"]


def test_classify_bare_module(tiny_cnn, tiny_input):
    preds = cnnvis.classify(tiny_cnn, tiny_input, top_k=3)
    assert len(preds) == 3 and all(len(p) == 3 for p in preds)
    probs = torch.softmax(tiny_cnn(tiny_input), 1)
    index, name, p = preds[0][0]
    assert index == probs[0].argmax().item() and p == pytest.approx(probs[0].max().item())
    single = cnnvis.classify(tiny_cnn, tiny_input[0], top_k=2)
    assert len(single) == 2 and single[0].index == index


def test_imagenet_names_for_a_bare_1000_class_model():
    import torchvision

    model = torchvision.models.squeezenet1_1().eval()
    (preds,) = cnnvis.classify(model, torch.randn(1, 3, 64, 64), top_k=1)  # a batch of one
    assert preds[0].name != f"class {preds[0].index}"


def test_bad_tensor_shape(tiny_cnn):
    with pytest.raises(cnnvis.ImageError, match=r"\(C, H, W\)"):
        cnnvis.explain(tiny_cnn, torch.randn(16, 16), "gradient")


def test_unknown_method_parameter_is_a_method_error(tiny_cnn, tiny_input):
    with pytest.raises(cnnvis.MethodError, match="gradient has no parameter 'steps'"):
        cnnvis.explain(tiny_cnn, tiny_input, "gradient", steps=3)


def test_rerecord_keeps_layers_and_targets(tiny_cnn, tiny_input):
    from cnnvis.capture import record

    rec = record(tiny_cnn, tiny_input, ["relu2"], rules=True, target=[0, 1, 2])
    again = rec.rerecord(tiny_input * 1.0, rec.targets)
    assert again.layers == ("relu2",) and again.targets.tolist() == [0, 1, 2]
    assert torch.equal(again.input_gradient("guided"), rec.input_gradient("guided"))
