"""occlusion and rise: Captum's occlusion on the same models and windows, closed forms on linear
models, RISE's definition recomputed by hand, seeding, batching and unit targets."""

from __future__ import annotations

import pytest
import torch
import torchvision
from captum.attr import Occlusion
from torch import nn

import cnnvis
from cnnvis.methods.rise import MaskBank
from cnnvis.targets import UnitTarget

from conftest import TinyCNN

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture
def x16():
    return torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))


class Linear(nn.Module):
    """logits = W · flatten(x) + b in float64."""

    def __init__(self, shape=(3, 6, 6), classes=3):
        super().__init__()
        self.fc = nn.Linear(int(torch.tensor(shape).prod()), classes).double()
        g = torch.Generator().manual_seed(4)
        with torch.no_grad():
            self.fc.weight.copy_(
                torch.randn(self.fc.weight.shape, generator=g, dtype=torch.float64)
            )

    def forward(self, x):
        return self.fc(x.flatten(1))


def count_batches(model: nn.Module, call):
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    try:
        return call(), sizes
    finally:
        handle.remove()


# ----------------------------------------------------------------------------- occlusion


@pytest.mark.parametrize(
    ("window", "stride", "captum_window", "captum_stride"),
    [
        (5, 3, (3, 5, 5), (3, 3, 3)),  # the last windows are cut at the border
        ((4, 6), (2, 3), (3, 4, 6), (3, 2, 3)),
        ((1, 5, 5), (1, 3, 3), (1, 5, 5), (1, 3, 3)),  # channels occluded apart
    ],
)
def test_occlusion_is_captums(tiny_cnn, x16, window, stride, captum_window, captum_stride):
    e = cnnvis.explain(tiny_cnn, x16, "occlusion", window=window, stride=stride, fill=0.3)
    captum = Occlusion(tiny_cnn).attribute(
        x16, captum_window, captum_stride, baselines=0.3, target=e.targets, perturbations_per_eval=8
    )
    assert relative(e.map, captum) < 1e-6


def test_occlusion_is_captums_on_resnet18():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    e = cnnvis.explain(model, x, "occlusion", window=16, stride=8, batch_size=25)
    captum = Occlusion(model).attribute(
        x, (3, 16, 16), (3, 8, 8), baselines=0.0, target=e.targets, perturbations_per_eval=25
    )
    assert relative(e.map, captum) < 1e-5
    assert float(torch.corrcoef(torch.stack([e.map.flatten(), captum.flatten()]))[0, 1]) > 0.999


def test_occlusion_with_a_one_pixel_window_on_a_linear_model_is_w_times_x_minus_fill():
    model = Linear()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    e = cnnvis.explain(model, x, "occlusion", window=(1, 1, 1), stride=(1, 1, 1), fill=-0.5)
    contribution = model.fc.weight[e.targets].view(2, 3, 6, 6) * (x + 0.5)
    assert torch.allclose(e.map, contribution, rtol=1e-10, atol=1e-12)
    # a 1x1 window through all channels: the pixel's summed contribution, in every channel
    e = cnnvis.explain(model, x, "occlusion", window=1, stride=1, fill=-0.5)
    assert torch.allclose(e.map, contribution.sum(1, keepdim=True).expand_as(x), rtol=1e-10)


def test_occlusion_batches_and_batch_equals_single_images(tiny_cnn, x16):
    def call():
        return cnnvis.explain(tiny_cnn, x16, "occlusion", window=4, stride=2, batch_size=10)

    e, sizes = count_batches(tiny_cnn, call)
    # the recorded forward, the unoccluded images scored alike, 49 windows per image
    assert max(sizes) == 10 and sum(sizes) == 3 + 3 + 3 * 49
    model, x = TinyCNN().double().eval(), x16.double()
    batch = cnnvis.explain(model, x, "occlusion", target=[0, 1, 2], window=4, stride=2)
    for i in range(3):
        single = cnnvis.explain(model, x[i : i + 1], "occlusion", target=i, window=4, stride=2)
        assert torch.allclose(batch.map[i], single.map[0], rtol=0, atol=1e-12)


def test_occlusion_of_a_unit_is_captums_on_the_unit(tiny_cnn, x16):
    e = cnnvis.explain(
        tiny_cnn, x16, "occlusion", target=UnitTarget("relu2", 3), window=4, stride=2
    )

    def unit(x):
        return tiny_cnn.relu2(tiny_cnn.conv2(tiny_cnn.relu1(tiny_cnn.conv1(x))))[:, 3].sum((1, 2))

    captum = Occlusion(unit).attribute(x16, (3, 4, 4), (3, 2, 2), baselines=0.0)
    assert relative(e.map, captum) < 1e-6


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"window": 17}, "larger than the input"),
        ({"window": 4, "stride": 5}, "skips pixels"),
        ({"window": (1, 2, 3, 4)}, "window must be"),
        ({"fill": torch.zeros(2, 2)}, "broadcast"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_occlusion_bad_parameters(tiny_cnn, x16, params, match):
    with pytest.raises(cnnvis.MethodError, match=match):
        cnnvis.explain(tiny_cnn, x16, "occlusion", **params)


# ----------------------------------------------------------------------------- RISE


def test_rise_masks_are_smooth_shifted_and_keep_a_fraction_p():
    bank = MaskBank(200, (28, 28), 7, 0.3, seed=0)
    masks = bank[list(range(200))]
    assert masks.shape == (200, 1, 28, 28) and masks.min() >= 0 and masks.max() <= 1
    assert abs(float(masks.mean()) - 0.3) < 0.03
    cell = 4  # ceil(28 / 7): bilinear over 4-pixel cells changes by at most 1/4 per pixel
    assert float(masks.diff(dim=-1).abs().max()) <= 1 / cell + 1e-6
    assert len({tuple(s) for s in bank.shifts}) > 1 and all(
        0 <= v < cell for s in bank.shifts for v in s
    )
    assert torch.equal(masks, MaskBank(200, (28, 28), 7, 0.3, seed=0)[list(range(200))])


@pytest.mark.parametrize("score", ["probability", "logit"])
def test_rise_is_its_definition_computed_by_hand(score):
    """Σ_i y(x ⊙ M_i + fill (1 - M_i)) M_i / (N p), one mask at a time, in float64."""
    model = TinyCNN().double().eval()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    e = cnnvis.explain(
        model, x, "rise", masks=40, cells=4, p=0.4, fill=0.2, score=score, batch_size=7, seed=9
    )
    bank = MaskBank(40, (16, 16), 4, 0.4, seed=9)
    expected = torch.zeros(2, 1, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        for i in range(40):
            m = bank[[i]].double()
            logits = model(x * m + 0.2 * (1 - m))
            y = logits.softmax(1) if score == "probability" else logits
            expected += y[[0, 1], e.targets].view(2, 1, 1, 1) * m
    expected = (expected / (40 * 0.4)).expand_as(x)
    assert torch.allclose(e.map, expected, rtol=1e-10, atol=1e-13)


def test_rise_with_every_cell_kept_is_the_score_everywhere(tiny_cnn, x16):
    e = cnnvis.explain(tiny_cnn, x16, "rise", masks=5, p=1.0)
    assert torch.allclose(e.map, torch.tensor(e.probabilities).view(3, 1, 1, 1).expand_as(x16))


def test_rise_finds_the_region_the_score_depends_on():
    class TopLeft(nn.Module):
        def forward(self, x):
            corner = x[:, :, :8, :8].sum((1, 2, 3))
            return torch.stack([corner, torch.zeros_like(corner)], dim=1)

    x = torch.ones(1, 3, 16, 16)
    e = cnnvis.explain(TopLeft(), x, "rise", target=0, masks=300, cells=4, score="logit")
    heat = e.map[0, 0]  # far from the corner: E[y M_p] / p = E[y] = 96; near it, more
    assert heat[:8, :8].mean() > heat[8:, 8:].mean() + 10
    assert divmod(int(heat.argmax()), 16) < (8, 8) and int(heat.argmax()) % 16 < 8


def test_rise_is_seeded_batched_and_batch_equals_single_images(tiny_cnn, x16):
    def call():
        return cnnvis.explain(tiny_cnn, x16, "rise", masks=20, cells=4, seed=1, batch_size=8)

    a, sizes = count_batches(tiny_cnn, call)
    assert max(sizes) == 8 and sum(sizes) == 3 + 3 * 20
    b = cnnvis.explain(tiny_cnn, x16, "rise", masks=20, cells=4, seed=1)
    c = cnnvis.explain(tiny_cnn, x16, "rise", masks=20, cells=4, seed=2)
    assert torch.allclose(a.map, b.map, rtol=0, atol=1e-7) and not torch.allclose(a.map, c.map)
    assert torch.equal(b.map, cnnvis.explain(tiny_cnn, x16, "rise", masks=20, cells=4, seed=1).map)
    model, x = TinyCNN().double().eval(), x16.double()
    batch = cnnvis.explain(model, x, "rise", target=[0, 1, 2], masks=20, cells=4)
    for i in range(3):
        single = cnnvis.explain(model, x[i : i + 1], "rise", target=i, masks=20, cells=4)
        assert torch.allclose(batch.map[i], single.map[0], rtol=0, atol=1e-12)


def test_rise_of_a_unit_scores_the_unit(tiny_cnn, x16):
    e = cnnvis.explain(tiny_cnn, x16[:1], "rise", target=UnitTarget("relu2", 3), masks=1, p=1.0)
    with torch.no_grad():
        unit = tiny_cnn.relu2(tiny_cnn.conv2(tiny_cnn.relu1(tiny_cnn.conv1(x16[:1]))))[:, 3].sum()
    assert torch.allclose(e.map, unit.expand_as(e.map))


@pytest.mark.parametrize(
    ("params", "match"),
    [({"p": 0.0}, "p must be"), ({"masks": 0}, "masks"), ({"score": "softmax"}, "score")],
)
def test_rise_bad_parameters(tiny_cnn, x16, params, match):
    with pytest.raises(cnnvis.MethodError, match=match):
        cnnvis.explain(tiny_cnn, x16, "rise", **params)


def test_occlusion_in_channels_last_with_folded_batch_norms_is_captums(monkeypatch):
    """On CPU in float32, large enough batches run in channels_last with the BatchNorms folded
    (thresholds lowered here for a small input): the same map up to rounding."""
    import cnnvis.folding as folding
    import cnnvis.forwards as batching

    monkeypatch.setattr(batching, "CHANNELS_LAST_MIN_ELEMENTS", 0)
    monkeypatch.setattr(folding, "FOLD_MIN_ELEMENTS", 0)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    e = cnnvis.explain(model, x, "occlusion", window=12, stride=6, batch_size=16)
    captum = Occlusion(model).attribute(
        x, (3, 12, 12), (3, 6, 6), baselines=0.0, target=e.targets, perturbations_per_eval=16
    )
    assert relative(e.map, captum) < 1e-3
    assert float(torch.corrcoef(torch.stack([e.map.flatten(), captum.flatten()]))[0, 1]) > 0.9999
