"""gradient-x-input, integrated-gradients and smoothgrad: Captum's values on the same models and
settings, the identities they must satisfy, unit targets, batching and seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from captum.attr import (
    InputXGradient,
    IntegratedGradients,
    NoiseTunnel,
    Saliency,
)
from torch import nn

import cnnvis
from cnnvis.model import Preprocess
from cnnvis.targets import UnitTarget

from conftest import TinyCNN

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

QUADRATURES = ["gausslegendre", "riemann_right", "riemann_left", "riemann_middle"]
BLACK = Preprocess().normalize(torch.zeros(3, 1, 1))  # a black picture as ImageNet input


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def count_batches(model: nn.Module, call):
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    try:
        return call(), sizes
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


@pytest.fixture(scope="module")
def pictures():
    """Two 64x64 random pictures, ImageNet-normalized as a LoadedModel would feed them."""
    return Preprocess().normalize(
        torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    )


@pytest.fixture
def x16():
    return torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))


class Linear(nn.Module):
    """logits = W · flatten(x) + b, float64: every gradient method has a closed form."""

    def __init__(self, shape=(3, 4, 4), classes=3):
        super().__init__()
        self.fc = nn.Linear(int(torch.tensor(shape).prod()), classes).double()
        with torch.no_grad():
            g = torch.Generator().manual_seed(4)
            self.fc.weight.copy_(
                torch.randn(self.fc.weight.shape, generator=g, dtype=torch.float64)
            )
            self.fc.bias.copy_(torch.randn(classes, generator=g, dtype=torch.float64))

    def forward(self, x):
        return self.fc(x.flatten(1))


def unit_score(model: TinyCNN, channel: int):
    """The UnitTarget("relu2", channel) score written out by hand: sum over space of the channel."""
    return lambda x: model.relu2(model.conv2(model.relu1(model.conv1(x))))[:, channel].sum((1, 2))


# ----------------------------------------------------------------------------- gradient x input


def test_gradient_x_input_is_captums_input_x_gradient(tiny_cnn, x16):
    e = cnnvis.explain(tiny_cnn, x16, "gradient-x-input")
    captum = InputXGradient(tiny_cnn).attribute(x16, target=e.targets)
    assert torch.allclose(e.map, captum, rtol=0, atol=1e-7)


def test_gradient_x_input_on_a_linear_model_is_w_times_x():
    model, x = Linear(), torch.randn(2, 3, 4, 4, dtype=torch.float64)
    e = cnnvis.explain(model, x, "gradient-x-input", target=1)
    assert torch.allclose(e.map, model.fc.weight[1].view(1, 3, 4, 4) * x, rtol=1e-12)


def test_gradient_x_input_of_a_unit(tiny_cnn, x16):
    e = cnnvis.explain(tiny_cnn, x16, "gradient-x-input", target=UnitTarget("relu2", 3))
    xg = x16.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(unit_score(tiny_cnn, 3)(xg).sum(), xg)
    assert torch.allclose(e.map, x16 * grad, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- integrated gradients


@pytest.mark.parametrize("quadrature", QUADRATURES)
def test_integrated_gradients_is_captums_on_a_tiny_cnn(tiny_cnn, x16, quadrature):
    e = cnnvis.explain(
        tiny_cnn, x16, "integrated-gradients", baseline="black", steps=20, quadrature=quadrature
    )
    ig = IntegratedGradients(tiny_cnn)
    captum = ig.attribute(
        x16, BLACK.expand_as(x16), target=e.targets, n_steps=20, method=quadrature
    )
    assert relative(e.map, captum) < 1e-5
    assert e.params["quadrature"] == quadrature and e.params["baseline"] == "black"


@pytest.mark.parametrize("quadrature", ["gausslegendre", "riemann_right"])
def test_integrated_gradients_is_captums_on_resnet18(resnet18, pictures, quadrature):
    x = pictures[:1]
    e = cnnvis.explain(
        resnet18, x, "integrated-gradients", baseline="black", steps=8, quadrature=quadrature
    )
    captum = IntegratedGradients(resnet18).attribute(
        x, BLACK.expand_as(x), target=e.targets, n_steps=8, method=quadrature
    )
    assert relative(e.map, captum) < 1e-5 and correlation(e.map, captum) > 0.999


def test_integrated_gradients_in_channels_last_is_captums(resnet18, pictures, monkeypatch):
    """On CPU in float32, batches of at least CHANNELS_LAST_MIN_ELEMENTS input elements run in
    channels_last (lowered here): the same map up to rounding (a ReLU whose input is within
    rounding of 0 may flip, so not to 1e-5)."""
    import cnnvis.forwards as batching

    monkeypatch.setattr(batching, "CHANNELS_LAST_MIN_ELEMENTS", 0)
    x = pictures[:1]
    e = cnnvis.explain(resnet18, x, "integrated-gradients", baseline="black", steps=8)
    captum = IntegratedGradients(resnet18).attribute(
        x, BLACK.expand_as(x), target=e.targets, n_steps=8
    )
    assert relative(e.map, captum) < 1e-2 and correlation(e.map, captum) > 0.9999


def test_default_is_captums_default_50_point_gauss_legendre(tiny_cnn, x16):
    e = cnnvis.explain(tiny_cnn, x16[:1], "integrated-gradients", baseline="zeros")
    captum = IntegratedGradients(tiny_cnn).attribute(x16[:1], target=e.targets)
    assert relative(e.map, captum) < 1e-5
    assert (e.params["steps"], e.params["quadrature"]) == (50, "gausslegendre")


@pytest.mark.parametrize("quadrature", QUADRATURES)
@pytest.mark.parametrize("baseline", ["black", "zeros", "blurred", "noise", "tensor"])
def test_integrated_gradients_on_a_linear_model_is_w_times_x_minus_baseline(quadrature, baseline):
    model = Linear()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    given = torch.randn(3, 4, 4, dtype=torch.float64) if baseline == "tensor" else baseline
    e = cnnvis.explain(
        model, x, "integrated-gradients", baseline=given, steps=3, quadrature=quadrature
    )
    # x' recovered from the identity's other side: f(x) - f(x') is reported with the map
    w = model.fc.weight[e.targets].view(2, 3, 4, 4)
    if baseline == "tensor":
        reference = given.expand_as(x)
    elif baseline == "black":
        reference = Preprocess().normalize(torch.zeros(3, 1, 1, dtype=torch.float64)).expand_as(x)
    elif baseline == "zeros":
        reference = torch.zeros_like(x)
    else:
        reference = None
    if reference is not None:
        assert torch.allclose(e.map, w * (x - reference), rtol=1e-10, atol=1e-12)
    assert max(e.params["completeness_error"]) < 1e-10  # exact on a linear model


def test_blurred_and_noise_baselines(tiny_cnn, x16):
    from cnnvis.methods.integrated_gradients import gaussian_blur

    blurred = gaussian_blur(x16, 2.0)
    e = cnnvis.explain(tiny_cnn, x16, "integrated-gradients", baseline="blurred", blur_sigma=2.0)
    via_tensor = cnnvis.explain(tiny_cnn, x16, "integrated-gradients", baseline=blurred)
    assert torch.equal(e.map, via_tensor.map)
    assert blurred.std() < x16.std() and torch.allclose(
        blurred.mean((2, 3)), x16.mean((2, 3)), atol=0.1
    )
    a, b, c = (
        cnnvis.explain(tiny_cnn, x16, "integrated-gradients", baseline="noise", seed=s).map
        for s in (0, 0, 1)
    )
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.fixture(scope="module")
def photos():
    """Four of the sample photographs at 64x64, ImageNet-normalized."""
    from cnnvis.images import list_samples

    names = sorted(list_samples())[:4]
    if len(names) < 4:
        pytest.skip("the sample photographs come with scikit-image")
    pictures = [
        torch.from_numpy(np.asarray(cnnvis.load_image(f"sample:{n}").resize((64, 64))).copy())
        for n in names
    ]
    return Preprocess().normalize(torch.stack(pictures).permute(0, 3, 1, 2).float() / 255)


def relative_errors(e) -> list[float]:
    """|Σ attr - (f(x) - f(x'))| / |f(x) - f(x')| per image, as reported with the map."""
    errors, differences = e.params["completeness_error"], e.params["score_difference"]
    return [err / abs(d) for err, d in zip(errors, differences, strict=True)]


def test_completeness_at_64_steps_with_the_defaults(resnet18, pictures, photos):
    """|Σ attr - (f(x) - f(x'))| < 1% of |f(x) - f(x')| at 64 steps: random-init ResNet-18, two
    noise pictures and four photographs, the default baseline (blurred) and rule
    (Gauss-Legendre). The reported error is the one computed from the map and two forwards."""
    for x in (pictures, photos):
        e = cnnvis.explain(resnet18, x, "integrated-gradients", steps=64)
        assert (e.params["baseline"], e.params["quadrature"]) == ("blurred", "gausslegendre")
        assert max(relative_errors(e)) < 0.01, relative_errors(e)
    from cnnvis.methods.integrated_gradients import gaussian_blur

    with torch.no_grad():
        f = (
            resnet18(x)[range(len(x)), e.targets]
            - resnet18(gaussian_blur(x, 5.0))[range(len(x)), e.targets]
        )
    assert torch.allclose(torch.tensor(e.params["score_difference"]), f, atol=1e-5)
    total = e.map.flatten(1).sum(1)
    assert torch.allclose(
        (total - f).abs(), torch.tensor(e.params["completeness_error"]), atol=1e-5
    )


def test_completeness_from_black_takes_more_steps(resnet18, photos):
    """From black many more ReLUs flip along the path (the score's derivative has more jumps):
    the same photographs need about 256 steps for the 1% (64 steps: up to 2.1% here)."""
    e64, e256 = (
        cnnvis.explain(resnet18, photos, "integrated-gradients", baseline="black", steps=s)
        for s in (64, 256)
    )
    assert max(relative_errors(e256)) < 0.01, relative_errors(e256)
    assert sum(relative_errors(e256)) < sum(relative_errors(e64))


def test_integrated_gradients_of_a_unit_is_captums_on_the_unit(tiny_cnn, x16):
    unit = UnitTarget("relu2", 3)
    e = cnnvis.explain(
        tiny_cnn, x16, "integrated-gradients", baseline="black", target=unit, steps=16
    )
    f = unit_score(tiny_cnn, 3)
    captum = IntegratedGradients(f).attribute(x16, BLACK.expand_as(x16), n_steps=16)
    assert relative(e.map, captum) < 1e-5
    with torch.no_grad():
        difference = f(x16) - f(BLACK.expand_as(x16))
    assert torch.allclose(torch.tensor(e.params["score_difference"]), difference, atol=1e-5)


def test_peak_batch_is_bounded_by_batch_size_not_steps(tiny_cnn, x16):
    e, sizes = count_batches(
        tiny_cnn,
        lambda: cnnvis.explain(tiny_cnn, x16[:2], "integrated-gradients", steps=256, batch_size=16),
    )
    assert max(sizes) == 16 and sum(sizes) == 2 + 2 * 256 + 2  # x, the path, x'
    whole = cnnvis.explain(tiny_cnn, x16[:2], "integrated-gradients", steps=256, batch_size=512)
    assert relative(e.map, whole.map) < 1e-6


def test_integrated_gradients_batch_equals_single_images(tiny_cnn, x16):
    model, x = TinyCNN().double().eval(), x16.double()
    batch = cnnvis.explain(
        model, x, "integrated-gradients", target=[0, 1, 2], steps=10, batch_size=7
    )
    for i in range(3):
        single = cnnvis.explain(model, x[i : i + 1], "integrated-gradients", target=i, steps=10)
        assert torch.allclose(batch.map[i], single.map[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"baseline": "grey"}, "baseline"),
        ({"quadrature": "simpson"}, "quadrature"),
        ({"steps": 0}, "steps"),
        ({"batch_size": -1}, "batch_size"),
        ({"baseline": torch.zeros(2, 5, 5)}, "broadcast"),
        ({"stpes": 10}, "no parameter .stpes."),
    ],
)
def test_integrated_gradients_bad_parameters(tiny_cnn, x16, params, match):
    with pytest.raises(cnnvis.MethodError, match=match):
        cnnvis.explain(tiny_cnn, x16, "integrated-gradients", **params)


# ----------------------------------------------------------------------------- smoothgrad


@pytest.mark.parametrize("base", ["gradient", "guided-backprop", "deconvnet", "gradient-x-input"])
def test_smoothgrad_without_noise_is_the_wrapped_method(tiny_cnn, x16, base):
    """noise_level=0 is the base map exactly (every copy is x, so it takes one pass); the
    sampling path with noise below float32 resolution gives it to rounding (per-sample CPU
    kernels differ in the last bit between batch compositions)."""
    plain = cnnvis.explain(tiny_cnn, x16, base).map
    for variant, expected in [
        ("smoothgrad", plain),
        ("smoothgrad-sq", plain * plain),
        ("vargrad", torch.zeros_like(plain)),
    ]:
        smooth = cnnvis.explain(
            tiny_cnn, x16, "smoothgrad", base=base, noise_level=0, variant=variant
        )
        assert torch.equal(smooth.map, expected)
    sampled = cnnvis.explain(
        tiny_cnn, x16, "smoothgrad", base=base, noise_level=1e-12, samples=5, batch_size=4
    )
    assert relative(sampled.map, plain) < 1e-6


def test_smoothgrad_of_integrated_gradients_without_noise(tiny_cnn, x16):
    ig = cnnvis.explain(tiny_cnn, x16, "integrated-gradients", steps=8).map
    smooth = cnnvis.explain(
        tiny_cnn,
        x16,
        "smoothgrad",
        base="integrated-gradients",
        noise_level=0.0,
        samples=2,
        steps=8,
    )
    assert torch.allclose(smooth.map, ig, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("variant", "nt_type"),
    [("smoothgrad", "smoothgrad"), ("smoothgrad-sq", "smoothgrad_sq"), ("vargrad", "vargrad")],
)
@pytest.mark.parametrize("base", ["gradient", "gradient-x-input"])
def test_smoothgrad_is_captums_noise_tunnel_with_the_same_seed(
    tiny_cnn, x16, base, variant, nt_type
):
    x = x16[:1]
    e = cnnvis.explain(
        tiny_cnn, x, "smoothgrad", base=base, variant=variant, samples=12, seed=3, batch_size=5
    )
    sigma = 0.15 * float(x.max() - x.min())  # the noise level is a fraction of the input range
    torch.manual_seed(3)
    method, extra = (
        (Saliency(tiny_cnn), {"abs": False})
        if base == "gradient"
        else (InputXGradient(tiny_cnn), {})
    )
    captum = NoiseTunnel(method).attribute(
        x, nt_type=nt_type, nt_samples=12, stdevs=sigma, target=e.targets, **extra
    )
    assert relative(e.map, captum) < 1e-5


def test_smoothgrad_is_seeded_and_batch_equals_single_images(tiny_cnn, x16):
    a, b, c = (
        cnnvis.explain(tiny_cnn, x16, "smoothgrad", samples=6, seed=s, batch_size=4).map
        for s in (5, 5, 6)
    )
    assert torch.equal(a, b) and not torch.equal(a, c)
    model, x = TinyCNN().double().eval(), x16.double()
    batch = cnnvis.explain(model, x, "smoothgrad", target=[0, 1, 2], samples=6, batch_size=4)
    for i in range(3):
        single = cnnvis.explain(model, x[i : i + 1], "smoothgrad", target=i, samples=6)
        assert torch.allclose(batch.map[i], single.map[0], rtol=0, atol=1e-12)


def test_smoothgrad_of_a_unit_and_bounded_batches(tiny_cnn, x16):
    def call():
        return cnnvis.explain(
            tiny_cnn,
            x16,
            "smoothgrad",
            base="gradient-x-input",
            target=UnitTarget("relu2", 3),
            noise_level=1e-12,
            samples=7,
            batch_size=4,
        )

    e, sizes = count_batches(tiny_cnn, call)
    assert max(sizes) == 4 and sum(sizes) == 3 + 3 * 7
    direct = cnnvis.explain(tiny_cnn, x16, "gradient-x-input", target=UnitTarget("relu2", 3))
    assert relative(e.map, direct.map) < 1e-6  # float32 rounding of other batch compositions


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"base": "grad-cam"}, "base"),
        ({"variant": "sq"}, "variant"),
        ({"noise_level": -0.1}, "noise_level"),
        ({"samples": 0}, "samples"),
    ],
)
def test_smoothgrad_bad_parameters(tiny_cnn, x16, params, match):
    with pytest.raises(cnnvis.MethodError, match=match):
        cnnvis.explain(tiny_cnn, x16, "smoothgrad", **params)


def test_smoothgrad_of_integrated_gradients_is_captums_and_bounded(tiny_cnn, x16):
    x = x16[:1]

    def call():
        return cnnvis.explain(
            tiny_cnn,
            x,
            "smoothgrad",
            base="integrated-gradients",
            baseline="black",
            samples=4,
            steps=8,
            seed=2,
            batch_size=4,
        )

    e, sizes = count_batches(tiny_cnn, call)
    assert max(sizes) == 4  # noisy copies and IG's path points alike
    sigma = 0.15 * float(x.max() - x.min())
    torch.manual_seed(2)
    captum = NoiseTunnel(IntegratedGradients(tiny_cnn)).attribute(
        x,
        nt_type="smoothgrad",
        nt_samples=4,
        stdevs=sigma,
        baselines=BLACK.expand_as(x),
        target=e.targets,
        n_steps=8,
    )
    assert relative(e.map, captum) < 1e-5
