"""The one-pass CAM family (cam_family.py): hand-derived values on tiny float64 models,
identities, agreement with TorchCAM and pytorch-grad-cam, sweeps and several layers at once."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import cnnvis
from cnnvis.capture import record
from cnnvis.methods import get_method, list_methods
from cnnvis.methods.cam import layer_activation, layer_gradient, weighted_sum
from cnnvis.postprocess import normalize

from conftest import HandNet, TinyCNN

FAMILY = ["grad-cam++", "xgrad-cam", "layer-cam", "hires-cam", "eigen-cam"]
CAMS = ["grad-cam", *FAMILY]

# The input of test_methods.py: x (1, 2, 2, 2), A_k = relu(W1[k] . x) at layer "act":
X = [[[1.0, 0.0], [2.0, -1.0]], [[0.0, 1.0], [1.0, 1.0]]]
A0, A1, A2 = [[1, 0], [1, 0]], [[2, 1], [5, 0]], [[1, 1], [3, 0]]
# A spatial weighting before the linear head makes G vary over space: G_kij = W2[c, k] M_ij.
M = [[1.0, 0.5], [2.0, -1.0]]


class MaskedHead(HandNet):
    """HandNet with sum_ij M_ij A_kij in place of global average pooling."""

    def forward(self, x):
        a = self.act(self.conv(x))
        mask = torch.tensor(M, dtype=a.dtype)
        return self.fc((a * mask).sum(dim=(2, 3)))


def _maps(model, x, methods, layer, target=None):
    results = cnnvis.explain_many(model, x, methods, layer, target=target)
    return {m: e.layer_map for (m, _), e in results.items()}


def _grid(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _combine(weights) -> torch.Tensor:
    return sum(w * _grid(a) for w, a in zip(weights, (A0, A1, A2), strict=True))


# Class 0, W2[0] = (1, -3, 2), so G_0 = M, G_1 = -3 M, G_2 = 2 M; sum_ij A_k = (2, 8, 5).
HAND_CLASS0 = {
    # Σ_k G_k ⊙ A_k = M ⊙ (A0 - 3 A1 + 2 A2) = M ⊙ [[-3, -1], [-8, 0]]
    "hires-cam": _grid([[-3.0, -0.5], [-16.0, 0.0]]),
    # Σ_k ReLU(G_k) ⊙ A_k: at (0,0) 1·1 + 0·2 + 2·1 = 3; (0,1) 0 + 0 + 1·1 = 1;
    # (1,0) 2·1 + 0·5 + 4·3 = 14; (1,1) every term 0
    "layer-cam": _grid([[3.0, 1.0], [14.0, 0.0]]),
    # w_k = Σ(G_k A_k) / Σ A_k = (1·3/2, -3·12.5/8, 2·7.5/5) = (1.5, -4.6875, 3)
    "xgrad-cam": _combine([1.5, -4.6875, 3.0]),
    # α = 1 / (2 + G Σ A) where G > 0; w_k = Σ α ReLU(G):
    # w0 = 1/(2+2) + 0.5/(2+1) + 2/(2+4); w1 = 3/(2+24); w2 = 2/(2+10) + 1/(2+5) + 4/(2+20)
    "grad-cam++": _combine([1 / 4 + 0.5 / 3 + 2 / 6, 3 / 26, 2 / 12 + 1 / 7 + 4 / 22]),
}
# Class 1, W2[1] = (0.5, 1, -1): HiRes = M ⊙ (0.5 A0 + A1 - A2) = M ⊙ [[1.5, 0], [2.5, 0]];
# LayerCAM at (0,0) .5·1 + 1·2 + 0 = 2.5; (0,1) 0 + .5·1 + 0 = .5; (1,0) 1·1 + 2·5 + 0 = 11
HAND_CLASS1 = {
    "hires-cam": _grid([[1.5, 0.0], [5.0, 0.0]]),
    "layer-cam": _grid([[2.5, 0.5], [11.0, 0.0]]),
}


@pytest.mark.parametrize(("target", "expected"), [(0, HAND_CLASS0), (1, HAND_CLASS1)])
def test_hand_values_on_a_tiny_model(target, expected):
    x = torch.tensor(X, dtype=torch.float64)[None]
    maps = _maps(MaskedHead().eval(), x, list(expected), "act", target)
    for name, value in expected.items():
        assert maps[name].dtype == torch.float64
        assert torch.allclose(maps[name][0], value, atol=1e-12), name


@pytest.mark.parametrize(
    ("sign", "expected"), [(1.0, [[0, -3], [6, -3]]), (-1.0, [[0, 3], [-6, 3]])]
)
def test_eigen_cam_hand_values_and_sign(sign, expected):
    # channel k = u_k m: centred, the first principal direction is ±u/|u| (|u| = 3) and the
    # projection is ±3 (m - mean m) = ±3 [[0, -1], [2, -1]]; the sign makes Σ_k v_k >= 0,
    # so negating every channel negates the map.
    u = sign * torch.tensor([2.0, 1.0, 2.0], dtype=torch.float64)
    m = torch.tensor([[1.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    x = (u[:, None, None] * m)[None]
    model = nn.Sequential(nn.Identity(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    maps = _maps(model.double().eval(), x, ["eigen-cam"], "0")
    assert torch.allclose(maps["eigen-cam"][0], _grid(expected), atol=1e-12)


def test_eigen_cam_ignores_the_target(tiny_cnn, tiny_input):
    a = _maps(tiny_cnn, tiny_input, ["eigen-cam"], "relu2", target=0)["eigen-cam"]
    b = _maps(tiny_cnn, tiny_input, ["eigen-cam"], "relu2", target=3)["eigen-cam"]
    assert torch.equal(a, b) and a.abs().amax() > 0


def test_hires_and_xgrad_equal_grad_cam_when_the_gradient_is_constant(tiny_cnn, tiny_input):
    # relu2 feeds global average pooling and a linear head: G_kij = w_ck / (h w) everywhere.
    maps = _maps(tiny_cnn, tiny_input, ["grad-cam", "hires-cam", "xgrad-cam"], "relu2")
    assert maps["grad-cam"].abs().amax() > 0
    assert torch.allclose(maps["hires-cam"], maps["grad-cam"], atol=1e-6)
    assert torch.allclose(maps["xgrad-cam"], maps["grad-cam"], atol=1e-6)


# Every method that maps a layer: the CAM family, Score-CAM, Ablation-CAM, guided Grad-CAM.
# `cam` itself is defined only at the layer feeding GAP + linear (tested below).
LAYER_METHODS = [m.name for m in list_methods() if m.needs_layer and m.name != "cam"]
TINY_LAYERS = ["conv1", "relu1", "conv2", "relu2"]


def test_every_layer_method_is_listed():
    assert {"score-cam", "ablation-cam", "eigen-cam", "guided-grad-cam", *CAMS} <= set(
        LAYER_METHODS
    )


@pytest.fixture(scope="module")
def tiny_many():
    """Every layer method at every layer of TinyCNN from one `explain_many` call."""
    model = TinyCNN().eval()
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    return model, x, cnnvis.explain_many(model, x, LAYER_METHODS, TINY_LAYERS)


@pytest.mark.parametrize("name", LAYER_METHODS)
def test_every_layer_method_in_a_sweep_and_on_several_layers(tiny_many, name):
    """Several layers at once (one recorded forward) give each layer's map as computed alone,
    and the sweep over every layer gives the same maps."""
    model, x, many = tiny_many
    assert {(name, layer) for layer in TINY_LAYERS} <= set(many)
    sweep = cnnvis.sweep(model, x, name, layers="all")
    assert sweep.layers == TINY_LAYERS
    shape = (3, 3, 16, 16) if get_method(name).kind == "pixel" else (3, 16, 16)
    for layer in TINY_LAYERS:
        e = sweep[layer]
        assert e.map.shape == shape and torch.isfinite(e.map).all()
        assert e.map.abs().amax() > 0, (name, layer)
        assert torch.allclose(e.map, many[(name, layer)].map, rtol=1e-5, atol=1e-6)
    alone = cnnvis.explain(model, x, name, layer="conv2")
    assert torch.allclose(alone.map, many[(name, "conv2")].map, rtol=1e-5, atol=1e-6)


def test_cam_works_at_the_gap_layer_and_refuses_the_others(tiny_cnn, tiny_input):
    failures: dict[str, cnnvis.CnnvisError] = {}
    many = cnnvis.explain_many(tiny_cnn, tiny_input, ["cam"], TINY_LAYERS, failures=failures)
    assert ("cam", "relu2") in many and isinstance(failures["cam"], cnnvis.MethodError)
    with pytest.raises(cnnvis.MethodError, match="grad-cam"):
        cnnvis.sweep(tiny_cnn, tiny_input, "cam", layers="all")


# --- several layers fused into one map ---


def test_fused_layers_by_hand():
    from cnnvis.fusion import fuse_layers

    def cam(layer, values):
        m = torch.tensor(values, dtype=torch.float64)[None]
        return cnnvis.Explanation("grad-cam", m, [0], ["c"], [0.5], torch.zeros(1, 3, 2, 2), layer)

    # relu, then min-max per map: a -> [[0, 1], [0.5, 0]], b -> [[1, 0], [0, 0.5]]
    a = cam("a", [[-1.0, 4.0], [2.0, 0.0]])
    b = cam("b", [[6.0, 0.0], [-3.0, 3.0]])
    mean = fuse_layers([a, b])  # mean [[0.5, 0.5], [0.25, 0.25]], min-max again
    assert torch.equal(mean.map[0], torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=torch.float64))
    top = fuse_layers({"a": a, "b": b}, how="max")
    assert torch.equal(top.map[0], torch.tensor([[1.0, 1.0], [0.5, 0.5]], dtype=torch.float64))
    assert (top.layer, top.params["fused_layers"], top.params["fusion"]) == (
        "a+b",
        ["a", "b"],
        "max",
    )
    assert top.layer_map is None
    with pytest.raises(cnnvis.MethodError, match="how"):
        fuse_layers([a, b], how="sum")
    with pytest.raises(cnnvis.MethodError, match="same method"):
        fuse_layers([a, replace(b, method="layer-cam")])
    with pytest.raises(cnnvis.MethodError, match="no explanations"):
        fuse_layers([])


@pytest.mark.parametrize("name", ["grad-cam", "score-cam", "eigen-cam"])
def test_fused_layers_of_a_sweep(tiny_cnn, tiny_input, name):
    from cnnvis.fusion import fuse_layers

    sweep = cnnvis.sweep(tiny_cnn, tiny_input, name, layers=["relu1", "relu2"])
    fused = fuse_layers(sweep, how="max")
    assert fused.map.shape == (3, 16, 16) and fused.map.min() >= 0 and fused.map.max() <= 1
    # the maximum of the two normalised maps, position by position
    assert torch.equal(
        fused.map,
        torch.maximum(*(normalize(e.map.clamp(min=0)) for e in sweep.explanations.values())),
    )


def test_registry_entries():
    infos = {m.name: m for m in list_methods("*cam*")}
    assert [infos[n].order for n in FAMILY] == [23, 24, 25, 26, 27]
    for name in FAMILY:
        info = get_method(name)
        assert info.kind == "cam" and info.needs_layer and info.formula and info.paper
        assert info.layer_gradients == (name != "eigen-cam")


# --- agreement with the peers, on the same random-init ResNet-18, layers and top-1 targets ---


def _corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each image's map (N,)."""
    a = a.flatten(1).double() - a.flatten(1).double().mean(1, keepdim=True)
    b = b.flatten(1).double() - b.flatten(1).double().mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


PGC = {
    "grad-cam": "GradCAM",
    "grad-cam++": "GradCAMPlusPlus",
    "xgrad-cam": "XGradCAM",
    "layer-cam": "LayerCAM",
    "hires-cam": "HiResCAM",
    "eigen-cam": "EigenCAM",
}
TORCHCAM = {
    "grad-cam": "GradCAM",
    "grad-cam++": "GradCAMpp",
    "xgrad-cam": "XGradCAM",
    "layer-cam": "LayerCAM",
}


def grad_cam_library_raw(model, layers, x, targets, methods=PGC, reshape=None):
    """pytorch-grad-cam's maps before its ReLU, min-max scaling and resize, {method: (N, h, w)
    per layer}: its hooks capture one forward and backward, then each of its classes'
    `get_cam_image` runs on what they captured."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    capture = pytorch_grad_cam.GradCAM(model=model, target_layers=layers, reshape_transform=reshape)
    try:
        capture(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets])
        acts = [a.numpy() for a in capture.activations_and_grads.activations]
        grads = [g.numpy() for g in capture.activations_and_grads.gradients]
    finally:
        capture.activations_and_grads.release()
    maps = {}
    for name, cls in methods.items():
        cam = getattr(pytorch_grad_cam, cls)(model=model, target_layers=layers)
        cam.activations_and_grads.release()
        raw = [
            cam.get_cam_image(x, layer, None, a, g, False)
            for layer, a, g in zip(layers, acts, grads, strict=True)
        ]
        maps[name] = [torch.from_numpy(np.asarray(r, dtype=np.float64)) for r in raw]
    return maps


def _torchcam_raw(model, layers, x, targets):
    """TorchCAM's maps without its normalization and without the ReLU it applies first,
    {method: (N, h, w) per layer}, every extractor hooked on one forward."""
    import torchcam.methods

    extractors = {n: getattr(torchcam.methods, c)(model, layers) for n, c in TORCHCAM.items()}
    try:
        scores = model(x)
        maps = {}
        for name, extractor in extractors.items():
            extractor._relu = False
            raw = extractor(targets, scores, normalized=False, retain_graph=True)
            maps[name] = [r.double() for r in raw]
    finally:
        for extractor in extractors.values():
            extractor.remove_hooks()
    return maps


class Scaled(nn.Module):
    """The model with its logits times `factor`."""

    def __init__(self, model: nn.Module, factor: float):
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x):
        return self.model(x) * self.factor


LAYERS = ["layer3", "layer4"]


@pytest.fixture(scope="module")
def resnet():
    pytest.importorskip("pytorch_grad_cam")
    pytest.importorskip("torchcam")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(1))
    results = cnnvis.explain_many(model, x, CAMS, LAYERS)
    ours = {key: e.layer_map.double() for key, e in results.items()}
    targets = next(iter(results.values())).targets
    modules = [dict(model.named_modules())[name] for name in LAYERS]
    theirs = {
        "pytorch-grad-cam": grad_cam_library_raw(model, modules, x, targets),
        "torchcam": _torchcam_raw(model, LAYERS, x, targets),
    }
    return model, x, targets, ours, theirs


@pytest.mark.parametrize(
    ("library", "name"),
    [("pytorch-grad-cam", n) for n in PGC if n != "grad-cam++"]
    + [("torchcam", n) for n in TORCHCAM if n != "grad-cam++"],
)
def test_agreement_with_the_peers(resnet, library, name):
    model, x, targets, ours, theirs = resnet
    for layer, their_map in zip(LAYERS, theirs[library][name], strict=True):
        corr = _corr(ours[(name, layer)], their_map)
        if name == "eigen-cam":  # pytorch-grad-cam keeps LAPACK's arbitrary sign
            corr = corr.abs()
        assert corr.min() >= 0.999, (layer, corr.tolist())


def test_grad_cam_plus_plus_against_pytorch_grad_cam(resnet):
    # pytorch-grad-cam adds 1e-6 to α's denominator 2G² + ΣA G³; here |G| ~ 1e-3 and that eps
    # is not negligible (correlation about 0.999 on these maps). With the logits scaled by
    # 1e3 (G by 1e3) it is, and the two closed forms agree.
    model, x, targets, ours, theirs = resnet
    for layer, their_map in zip(LAYERS, theirs["pytorch-grad-cam"]["grad-cam++"], strict=True):
        assert _corr(ours[("grad-cam++", layer)], their_map).min() >= 0.99
    scaled = Scaled(model, 1e3).eval()
    mine = _maps(scaled, x, ["grad-cam++"], "model.layer3", targets)["grad-cam++"]
    method = {"grad-cam++": PGC["grad-cam++"]}
    their_map = grad_cam_library_raw(scaled, [model.layer3], x, targets, method)["grad-cam++"][0]
    assert _corr(mine, their_map).min() >= 0.9999


def test_torchcam_grad_cam_plus_plus_is_a_different_definition(resnet):
    # TorchCAM 0.5.0 divides a boolean-masked copy in place (`alpha[mask].div_(...)`), so its α
    # stays G² and its weights are Σ_ij G² ReLU(G): check that definition.
    model, x, targets, ours, theirs = resnet
    rec = record(model, x, LAYERS, target=targets)
    for layer, their_map in zip(LAYERS, theirs["torchcam"]["grad-cam++"], strict=True):
        acts = layer_activation(rec, layer).detach().double()
        grads = layer_gradient(rec, layer).double()
        cubed = weighted_sum(acts, (grads.pow(2) * grads.clamp(min=0)).sum(dim=(2, 3)))
        assert _corr(cubed, their_map).min() >= 0.9999


def test_fused_mean_is_pytorch_grad_cams_several_target_layers(resnet):
    """pytorch-grad-cam with target_layers=[layer3, layer4]: per layer ReLU, min-max, resize,
    then the mean, min-maxed again. It ReLUs and normalises before resizing (OpenCV), cnnvis
    after upsampling: the same up to that order (measured r = 0.9999997)."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from cnnvis.fusion import fuse_layers

    model, x, targets, _, _ = resnet
    fused = fuse_layers(cnnvis.explain_many(model, x, ["grad-cam"], LAYERS, target=targets))
    modules = [dict(model.named_modules())[name] for name in LAYERS]
    with pytorch_grad_cam.GradCAM(model=model, target_layers=modules) as cam:
        theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets])
    corr = _corr(fused.map, torch.from_numpy(theirs))
    assert corr.min() >= 0.999, corr.tolist()
