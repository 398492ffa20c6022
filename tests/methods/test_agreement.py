"""Agreement with the peers (Captum, TorchCAM, pytorch-grad-cam) on random-init torchvision models.

Every model is seeded, in eval mode, with a batch of 2 seeded 224x224 inputs, built once per
module (the `cases` fixture) and explained once with every method through `explain_many`.

What is compared, and how tightly (measured on CPU, float32):

- Grad-CAM at the layer's resolution vs Captum `LayerGradCam` (raw and `relu_attributions=True`):
  relative max error <= 1e-4 (measured <= 1.2e-6).
- Grad-CAM upsampled to the input vs Captum's output put through
  `LayerAttribution.interpolate(..., interpolate_mode="bilinear")`. Captum calls
  `F.interpolate(attr, size, mode="bilinear")` without `align_corners`, i.e. align_corners=False,
  the same as cnnvis, so the tolerance stays 1e-4 relative (measured <= 1.2e-6). Captum's default
  mode is "nearest", which differs by far more (checked too).
- Guided backprop / deconvnet vs Captum `GuidedBackprop` / `Deconvolution` on VGG16 and
  ResNet-50, whose every ReLU is an `nn.ReLU` module: relative error <= 1e-6 (measured 0.0).
- Gradient vs `torch.autograd.grad` and Captum `Saliency(abs=False)`: bit for bit.
- CAM = (h*w) x Grad-CAM on ResNet-50 (GAP + linear head): relative 1e-4 (measured 49 +- 1e-4).
- Guided Grad-CAM = guided backprop x bilinear-upsampled ReLU(Grad-CAM): relative 1e-6.
- Guided backprop vs gradient on DenseNet-121 and EfficientNet-Lite0 (ReLU6): clearly different
  (correlation measured 0.47 and ~0.0), where Captum's guided backprop silently is the gradient
  on ReLU6 networks and only partly guided on DenseNet.
- Grad-CAM vs TorchCAM `GradCAM` and pytorch-grad-cam `GradCAM` on ResNet-18, like with like
  (see the tests for each library's ReLU / normalization / upsampling): correlation >= 0.999.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import cnnvis

captum_attr = pytest.importorskip("captum.attr")

SIZE = 224
PIXEL_METHODS = ("gradient", "guided-backprop", "deconvnet")
LAYER_METHODS = ("grad-cam", "guided-grad-cam")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# ----------------------------------------------------------------------------- helpers


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max |ours - ref| / max |ref| (the reference must not be all zero)."""
    scale = ref.abs().max()
    assert scale > 0, "degenerate reference (all zero): choose other targets"
    return float((ours - ref).abs().max() / scale)


def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation per image (N,)."""
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def minmax(t: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Per-image min-max normalization over every dim but the first."""
    dims = tuple(range(1, t.dim()))
    t = t - t.amin(dim=dims, keepdim=True)
    return t / (t.amax(dim=dims, keepdim=True) + eps)


def bilinear(cam: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """(N, h, w) -> (N, size, size), bilinear, align_corners=False (written out here on purpose)."""
    return F.interpolate(cam[:, None], size=(size, size), mode="bilinear", align_corners=False)[
        :, 0
    ]


def seeded_input(n: int = 2, size: int = SIZE, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def autograd_gradient(model: nn.Module, x: torch.Tensor, targets: list[int]) -> torch.Tensor:
    xg = x.clone().requires_grad_(True)
    score = model(xg).gather(1, torch.tensor(targets)[:, None]).sum()
    (grad,) = torch.autograd.grad(score, xg)
    return grad


@dataclass
class Case:
    """A seeded model, its input, a layer, and cnnvis' maps from ONE `explain_many` call."""

    model: nn.Module
    x: torch.Tensor
    layer: str
    results: dict[tuple[str, str | None], cnnvis.Explanation]
    _captum_raw: torch.Tensor | None = None

    def captum_grad_cam(self, relu: bool) -> torch.Tensor:
        """Captum's LayerGradCam (N, 1, h, w); the raw one is computed once and shared."""
        gradcam = captum_attr.LayerGradCam(self.model, self.module)
        if relu:
            return gradcam.attribute(self.x, target=self.targets, relu_attributions=True)
        if self._captum_raw is None:
            self._captum_raw = gradcam.attribute(
                self.x, target=self.targets, relu_attributions=False
            )
        return self._captum_raw

    @property
    def module(self) -> nn.Module:
        return dict(self.model.named_modules())[self.layer]

    @property
    def targets(self) -> list[int]:
        return self.results[("gradient", None)].targets

    def pixel(self, method: str) -> torch.Tensor:
        return self.results[(method, None)].map

    def layer_result(self, method: str) -> cnnvis.Explanation:
        return self.results[(method, self.layer)]


def _default_model() -> nn.Module:
    """The offline default architecture (EfficientNet-Lite0, ReLU6), random init."""
    try:
        return cnnvis.load_model(weights=None).module
    except Exception:  # zoo.py not ready: the same architecture straight from timm
        import timm

        return timm.create_model("tf_efficientnet_lite0", pretrained=False)


BUILDERS: dict[str, tuple[Callable[[], nn.Module], str, tuple[str, ...]]] = {
    "vgg16": (lambda: torchvision.models.vgg16(weights=None), "features.29", ()),
    "resnet50": (lambda: torchvision.models.resnet50(weights=None), "layer4", ("cam",)),
    "densenet121": (lambda: torchvision.models.densenet121(weights=None), "features", ()),
    "mobilenet_v3_large": (
        lambda: torchvision.models.mobilenet_v3_large(weights=None),
        "features",
        (),
    ),
    "resnet18": (lambda: torchvision.models.resnet18(weights=None), "layer4", ()),
    "efficientnet_lite0": (_default_model, "bn2", ()),
}


class _Cases(dict):
    def __missing__(self, name: str) -> Case:
        build, layer, extra = BUILDERS[name]
        torch.manual_seed(0)
        model = build().eval()
        x = seeded_input()
        methods = [*PIXEL_METHODS, *LAYER_METHODS, *extra]
        # target=None: each image's top-1 class, whose Grad-CAM has a positive part
        results = cnnvis.explain_many(model, x, methods, [layer])
        case = self[name] = Case(model, x, layer, results)
        return case


@pytest.fixture(scope="module")
def cases():
    store = _Cases()
    yield store
    store.clear()


CAM_MODELS = ["vgg16", "resnet50", "densenet121", "mobilenet_v3_large"]


# ----------------------------------------------------------------------------- Grad-CAM vs Captum


@pytest.mark.parametrize("name", CAM_MODELS)
def test_grad_cam_layer_map_matches_captum(cases, name):
    case = cases[name]
    ours = case.layer_result("grad-cam").layer_map
    relu = case.captum_grad_cam(relu=True)
    raw = case.captum_grad_cam(relu=False)
    assert relu.shape == (2, 1, *ours.shape[1:])
    assert (relu.flatten(1).amax(1) > 0).all(), "each image's ReLU(Grad-CAM) must be non-zero"
    assert rel_err(ours.clamp(min=0), relu[:, 0]) <= 1e-4
    assert rel_err(ours, raw[:, 0]) <= 1e-4


@pytest.mark.parametrize("name", CAM_MODELS)
def test_grad_cam_upsampled_matches_captum_bilinear_interpolate(cases, name):
    """Captum's `LayerAttribution.interpolate` is `F.interpolate(attr, size, mode=mode)`: with
    "bilinear" that is align_corners=False, as in cnnvis; its default "nearest" is not."""
    case = cases[name]
    result = case.layer_result("grad-cam")
    raw = case.captum_grad_cam(relu=False)
    up = captum_attr.LayerAttribution.interpolate(raw, (SIZE, SIZE), interpolate_mode="bilinear")
    assert result.map.shape == (2, SIZE, SIZE)
    assert rel_err(result.map, up[:, 0]) <= 1e-4
    # and the display map, ReLU then upsample, as each library builds it
    relu_up = captum_attr.LayerAttribution.interpolate(
        raw.clamp(min=0), (SIZE, SIZE), interpolate_mode="bilinear"
    )
    assert rel_err(bilinear(result.layer_map.clamp(min=0)), relu_up[:, 0]) <= 1e-4
    nearest = captum_attr.LayerAttribution.interpolate(raw, (SIZE, SIZE))
    assert rel_err(result.map, nearest[:, 0]) > 1e-2


# ----------------------------------------------------------------------------- pixel methods


@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
def test_guided_backprop_and_deconvnet_match_captum_on_module_relus(cases, name):
    """VGG16 and ResNet-50 apply every ReLU as an `nn.ReLU` module (in place; ResNet reuses one
    module per block), which Captum hooks: the two must agree."""
    case = cases[name]
    guided = captum_attr.GuidedBackprop(case.model).attribute(case.x, target=case.targets)
    deconv = captum_attr.Deconvolution(case.model).attribute(case.x, target=case.targets)
    assert rel_err(case.pixel("guided-backprop"), guided) <= 1e-6
    assert rel_err(case.pixel("deconvnet"), deconv) <= 1e-6


class ModuleReluDenseNet(nn.Module):
    """torchvision's DenseNet forward with its functional `F.relu(features)` replaced by an
    `nn.ReLU` module, sharing the original's modules (so the same weights and logits)."""

    def __init__(self, densenet: nn.Module):
        super().__init__()
        self.features = densenet.features
        self.relu = nn.ReLU()
        self.classifier = densenet.classifier

    def forward(self, x):
        out = self.relu(self.features(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(out, (1, 1)), 1))


def test_densenet121_functional_relu_captum_misses_it(cases):
    """DenseNet-121's last ReLU is `F.relu(features, inplace=True)` in `DenseNet.forward`. Captum
    hooks only `nn.ReLU` modules, so at that ReLU it passes the plain gradient (negative values
    included) instead of the guided/deconvnet one: its "guided backprop" is a mixture. Captum
    run on a twin where that ReLU is a module is the correct reference; cnnvis on the original
    model must equal it, and Captum on the original must not."""
    case = cases["densenet121"]
    twin = ModuleReluDenseNet(case.model).eval()
    with torch.no_grad():
        assert torch.equal(twin(case.x), case.model(case.x))
    for method, peer in (
        ("guided-backprop", captum_attr.GuidedBackprop),
        ("deconvnet", captum_attr.Deconvolution),
    ):
        ours = case.pixel(method)
        reference = peer(twin).attribute(case.x, target=case.targets)
        on_original = peer(case.model).attribute(case.x, target=case.targets)
        assert rel_err(ours, reference) <= 1e-6, method
        assert rel_err(on_original, reference) > 0.1, method


class FunctionalReluToy(nn.Module):
    """x -> conv3x3 -> F.relu -> conv1x1 -> torch.relu_ (in place) -> GAP -> linear, float64."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=True).double()
        self.conv2 = nn.Conv2d(4, 5, 1, bias=True).double()
        self.fc = nn.Linear(5, 6).double()
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))

    def pre_activations(self, x):
        z1 = self.conv1(x)
        z2 = self.conv2(F.relu(z1))
        return z1, z2

    def forward(self, x):
        z2 = self.conv2(F.relu(self.conv1(x)))
        return self.fc(torch.relu_(z2).mean(dim=(2, 3)))


def _toy_reference(toy: FunctionalReluToy, x: torch.Tensor, targets: list[int], rule: str):
    """Hand-derived backward: conv^T is conv_transpose2d with the same weight, the ReLUs apply
    `rule` (plain: 1[z>0] g; guided: 1[z>0] max(g, 0); deconvnet: max(g, 0))."""

    def through_relu(z, g):
        if rule == "plain":
            return g * (z > 0)
        if rule == "guided":
            return g.clamp(min=0) * (z > 0)
        return g.clamp(min=0)

    with torch.no_grad():
        z1, z2 = toy.pre_activations(x)
        h, w = z2.shape[-2:]
        g2 = (toy.fc.weight[targets] / (h * w))[:, :, None, None].expand_as(z2)
        g1 = F.conv_transpose2d(through_relu(z2, g2), toy.conv2.weight)
        return F.conv_transpose2d(through_relu(z1, g1), toy.conv1.weight, padding=1)


def test_functional_relu_toy_hand_reference():
    """On a model whose ReLUs are all functional (one in place), cnnvis equals the hand-derived
    maps in float64, while Captum's GuidedBackprop and Deconvolution see no `nn.ReLU` at all and
    return the plain gradient."""
    toy = FunctionalReluToy().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    targets = [1, 4]
    results = cnnvis.explain_many(toy, x, PIXEL_METHODS, target=targets)
    plain = _toy_reference(toy, x, targets, "plain")
    for method, rule in zip(PIXEL_METHODS, ("plain", "guided", "deconvnet"), strict=True):
        ours = results[(method, None)].map
        assert ours.dtype == torch.float64
        torch.testing.assert_close(ours, _toy_reference(toy, x, targets, rule), rtol=1e-12, atol=0)
    for method, peer in (
        ("guided-backprop", captum_attr.GuidedBackprop),
        ("deconvnet", captum_attr.Deconvolution),
    ):
        theirs = peer(toy).attribute(x, target=targets)
        torch.testing.assert_close(theirs, plain, rtol=1e-12, atol=1e-15)
        assert rel_err(results[(method, None)].map, theirs) > 0.1


@pytest.mark.parametrize("name", CAM_MODELS)
def test_gradient_is_autograd_and_captum_saliency_exactly(cases, name):
    case = cases[name]
    ours = case.pixel("gradient")
    assert torch.equal(ours, autograd_gradient(case.model, case.x, case.targets))
    saliency = captum_attr.Saliency(case.model).attribute(case.x, target=case.targets, abs=False)
    assert torch.equal(ours, saliency)


# ----------------------------------------------------------------------------- identities


def test_cam_is_grad_cam_times_hw_on_gap_linear_head(cases):
    """ResNet-50: layer4 -> global average pool -> fc, so d y_c / d A_kij = w_ck / (h w) and
    Grad-CAM = CAM / (h w) elementwise."""
    case = cases["resnet50"]
    cam = case.layer_result("cam").layer_map
    grad_cam = case.layer_result("grad-cam").layer_map
    h, w = cam.shape[-2:]
    assert (h, w) == (7, 7)
    scale = float(cam.abs().max())
    torch.testing.assert_close(cam, grad_cam * (h * w), rtol=1e-4, atol=1e-5 * scale)
    big = cam.abs() > 1e-2 * scale
    ratio = cam[big] / grad_cam[big]
    assert float((ratio - h * w).abs().max()) <= 1e-4 * h * w


@pytest.mark.parametrize("name", CAM_MODELS)
def test_guided_grad_cam_is_guided_backprop_times_upsampled_grad_cam(cases, name):
    case = cases[name]
    guided = case.pixel("guided-backprop")
    heat = bilinear(case.layer_result("grad-cam").layer_map.clamp(min=0))
    expected = guided * heat[:, None]
    assert rel_err(case.layer_result("guided-grad-cam").map, expected) <= 1e-6


@pytest.mark.parametrize("name", ["densenet121", "efficientnet_lite0"])
def test_guided_backprop_is_not_the_gradient(cases, name):
    """Guided backprop must act on DenseNet's functional ReLU and on ReLU6 (EfficientNet-Lite0,
    the default architecture); swapping `nn.ReLU` modules would leave the plain gradient.
    Captum's GuidedBackprop on EfficientNet-Lite0 is exactly that: the gradient."""
    case = cases[name]
    gradient = case.pixel("gradient")
    for method in ("guided-backprop", "deconvnet"):
        other = case.pixel(method)
        assert not torch.allclose(other, gradient), method
        assert (correlation(other, gradient) < 0.9).all(), method
    if name == "efficientnet_lite0":
        captum_guided = captum_attr.GuidedBackprop(case.model).attribute(
            case.x, target=case.targets
        )
        assert torch.equal(captum_guided, gradient)


# ----------------------------------------------------------------------------- TorchCAM, grad-cam


def test_grad_cam_matches_torchcam(cases):
    """TorchCAM's GradCAM: weights = spatial mean of d(sum of target logits)/dA (autograd.grad to
    the layer), ReLU, then per-image min-max normalization (x - min) / (max + 1e-8) when
    `normalized=True`; maps stay at the layer's resolution (upsampling is left to its
    `overlay_mask`). Compared un-normalized to ReLU(layer_map), and normalized to the same
    normalization of it."""
    methods = pytest.importorskip("torchcam.methods")
    case = cases["resnet18"]
    ours = case.layer_result("grad-cam").layer_map.clamp(min=0)
    with methods.GradCAM(case.model, target_layer=case.layer) as extractor:
        scores = case.model(case.x)
        (raw,) = extractor(case.targets, scores, normalized=False, retain_graph=True)
        (normalized,) = extractor(case.targets, scores, normalized=True)
    assert raw.shape == ours.shape
    assert rel_err(ours, raw) <= 1e-4
    assert (correlation(ours, raw) >= 0.999).all()
    assert float((minmax(ours, eps=1e-8) - normalized).abs().max()) <= 1e-5
    assert not case.model.layer4._forward_hooks


def test_grad_cam_matches_pytorch_grad_cam(cases):
    """pytorch-grad-cam's GradCAM: weights = spatial mean of the gradient (a `.backward()` of
    the summed target logits, `ClassifierOutputTarget`), ReLU, per-image min-max
    (x - min) / (max + 1e-7), `cv2.resize` (bilinear, half-pixel centres = align_corners=False)
    to the input size, then ReLU and min-max again. Compared to cnnvis'
    min-max(bilinear(ReLU(layer_map))). It also calls `model.eval()` and fills `.grad`, so it
    gets a copy of the model."""
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    case = cases["resnet18"]
    model = BUILDERS["resnet18"][0]().eval()
    model.load_state_dict(case.model.state_dict())
    ours = minmax(bilinear(case.layer_result("grad-cam").layer_map.clamp(min=0)))
    with GradCAM(model=model, target_layers=[model.layer4]) as extractor:
        theirs = extractor(case.x, targets=[ClassifierOutputTarget(t) for t in case.targets])
    theirs = torch.from_numpy(theirs)
    assert theirs.shape == ours.shape == (2, SIZE, SIZE)
    assert (correlation(ours, theirs) >= 0.999).all()
    assert float((ours - theirs).abs().max()) <= 1e-3
