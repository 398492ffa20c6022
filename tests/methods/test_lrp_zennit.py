"""LRP agrees with Zennit (the reference implementation) for the same composite and canonizers.

cnnvis finds its canonizers by itself; Zennit is given the matching ones: its own for VGG and
ResNet, and for DenseNet and timm's EfficientNet (which its built-in ones do not cover:
`SequentialMergeBatchNorm` mis-merges DenseNet's convolutions into the BatchNorm of the next
concatenation, and the functional pooling and residual sums are invisible to its hooks) the
BatchNorm pairs by name, a pooling module in place of DenseNet's functional one and a `Sum`
module in place of the blocks' `x + shortcut`, as Zennit's ResNet canonizer does.
"""

from __future__ import annotations

import pytest
import torch
import torchvision

import cnnvis

zennit = pytest.importorskip("zennit")
from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual  # noqa: E402
from torchvision.models.densenet import DenseNet, _DenseLayer  # noqa: E402
from zennit.attribution import Gradient  # noqa: E402
from zennit.canonizers import AttributeCanonizer, NamedMergeBatchNorm  # noqa: E402
from zennit.composites import (  # noqa: E402
    EpsilonAlpha2Beta1,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
)
from zennit.layer import Sum  # noqa: E402
from zennit.torchvision import ResNetCanonizer, VGGCanonizer  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def zennit_relevance(model, x, targets, composite) -> torch.Tensor:
    """Zennit's input relevance with the target logit as output relevance (as cnnvis)."""
    with torch.no_grad():
        logits = model(x)
    seed = torch.zeros_like(logits)
    rows = torch.arange(len(targets))
    seed[rows, targets] = logits[rows, targets]
    with Gradient(model=model, composite=composite) as attributor:
        _, found = attributor(x, seed)
    return found


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """The smallest Pearson r over the images of the batch."""
    return min(
        torch.corrcoef(torch.stack([a[i].flatten(), b[i].flatten()]))[0, 1].item()
        for i in range(len(a))
    )


def check(model, x, targets, cnnvis_composite, zennit_composite, **params) -> None:
    model.eval()
    ours = cnnvis.explain(
        model, x, "lrp", target=targets.tolist(), composite=cnnvis_composite, **params
    )
    theirs = zennit_relevance(model, x, targets, zennit_composite)
    assert correlation(ours.map, theirs) >= 0.999
    torch.testing.assert_close(ours.map.sum((1, 2, 3)), theirs.sum((1, 2, 3)), rtol=1e-3, atol=1e-4)


def images(n: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


TARGETS = torch.tensor([3, 7])


def small_vgg(make) -> torch.nn.Module:
    """A torchvision VGG with a small classifier (the 120M-parameter one only costs time)."""
    torch.manual_seed(0)
    model = make(weights=None)
    model.classifier = torch.nn.Sequential(
        torch.nn.Linear(512 * 7 * 7, 64),
        torch.nn.ReLU(),
        torch.nn.Dropout(),
        torch.nn.Linear(64, 10),
    )
    return model


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("EpsilonPlusFlat", lambda: EpsilonPlusFlat(canonizers=[VGGCanonizer()])),
        ("EpsilonAlpha2Beta1", lambda: EpsilonAlpha2Beta1(canonizers=[VGGCanonizer()])),
        ("EpsilonPlus", lambda: EpsilonPlus(canonizers=[VGGCanonizer()])),
    ],
)
def test_vgg16_bn(name, make):
    check(small_vgg(torchvision.models.vgg16_bn), images(), TARGETS, name, make())


def test_vgg16_epsilon_gamma_box():
    low = torch.tensor([-2.1, -2.0, -1.8]).view(1, 3, 1, 1)
    high = torch.tensor([2.2, 2.4, 2.6]).view(1, 3, 1, 1)
    composite = EpsilonGammaBox(low=low, high=high, canonizers=[VGGCanonizer()])
    x = images().clamp(-1.8, 2.2)
    check(
        torchvision.models.vgg11(weights=None),
        x,
        TARGETS,
        "EpsilonGammaBox",
        composite,
        low=low,
        high=high,
    )


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_resnet(arch):
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None)
    check(
        model, images(), TARGETS, "EpsilonPlusFlat", EpsilonPlusFlat(canonizers=[ResNetCanonizer()])
    )


def _densenet_forward(self, x):
    out = self.canonizer_pool(self.canonizer_relu(self.features(x)))
    return self.classifier(torch.flatten(out, 1))


class DenseNetPooling(AttributeCanonizer):
    """DenseNet's functional ReLU and pooling as modules, so that Zennit's hooks see them."""

    def __init__(self) -> None:
        super().__init__(self.attributes)

    @staticmethod
    def attributes(name, module):
        if not isinstance(module, DenseNet):
            return None
        return {
            "forward": _densenet_forward.__get__(module),
            "canonizer_relu": torch.nn.ReLU(),
            "canonizer_pool": torch.nn.AdaptiveAvgPool2d(1),
        }


def test_densenet121():
    torch.manual_seed(0)
    model = torchvision.models.densenet121(weights=None)
    pairs = [(("features.conv0",), "features.norm0")] + [
        ((f"{n}.conv1",), f"{n}.norm2")
        for n, m in model.named_modules()
        if isinstance(m, _DenseLayer)
    ]
    composite = EpsilonPlusFlat(canonizers=[NamedMergeBatchNorm(pairs), DenseNetPooling()])
    check(model, images(), TARGETS, "EpsilonPlusFlat", composite)


def _block_forward(self, x):
    shortcut = x
    names = (
        ("conv_pw", "bn1", "conv_dw", "bn2", "aa", "se", "conv_pwl", "bn3")
        if isinstance(self, InvertedResidual)
        else ("conv_dw", "bn1", "aa", "se", "conv_pw", "bn2")
    )
    for name in names:
        x = getattr(self, name)(x)
    return self.canonizer_sum(torch.stack([shortcut, self.drop_path(x)], dim=-1))


class EfficientNetSkips(AttributeCanonizer):
    """timm's `x = drop_path(x) + shortcut` through a Zennit `Sum` (its ResNet canonizer's way)."""

    def __init__(self) -> None:
        super().__init__(self.attributes)

    @staticmethod
    def attributes(name, module):
        if isinstance(module, DepthwiseSeparableConv | InvertedResidual) and module.has_skip:
            return {"forward": _block_forward.__get__(module), "canonizer_sum": Sum()}
        return None


def efficientnet_pairs(model) -> list:
    pairs = [(("conv_stem",), "bn1"), (("conv_head",), "bn2")]
    for n, m in model.named_modules():
        if isinstance(m, InvertedResidual):
            pairs += [((f"{n}.conv_pw",), f"{n}.bn1"), ((f"{n}.conv_dw",), f"{n}.bn2")]
            pairs += [((f"{n}.conv_pwl",), f"{n}.bn3")]
        elif isinstance(m, DepthwiseSeparableConv):
            pairs += [((f"{n}.conv_dw",), f"{n}.bn1"), ((f"{n}.conv_pw",), f"{n}.bn2")]
    return pairs


def test_offline_pretrained_efficientnet_lite0_on_real_photos():
    loaded = cnnvis.load_model()
    model = loaded.module
    from cnnvis.api import prepare_inputs

    x, _ = prepare_inputs(loaded, ["sample:cat", "sample:coffee"])
    ours = cnnvis.explain(loaded, ["sample:cat", "sample:coffee"], "lrp")
    assert ours.targets == [285, 967]  # Egyptian cat, espresso
    composite = EpsilonPlusFlat(
        canonizers=[NamedMergeBatchNorm(efficientnet_pairs(model)), EfficientNetSkips()]
    )
    theirs = zennit_relevance(model, x, torch.tensor(ours.targets), composite)
    assert correlation(ours.map, theirs) >= 0.999


def test_user_rules_by_name_and_type_match_zennits_name_map():
    """w-square on the first convolution, γ = 0.5 on the others, α1β0 on the dense layers, by
    name and by type, against Zennit's `NameMapComposite` with the same rules (and the rules
    cnnvis gives pooling and activations whatever the composite: ε-like norm, pass)."""
    from zennit.composites import NameMapComposite
    from zennit.rules import AlphaBeta, Gamma, Norm, Pass, WSquare

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 16),
        torch.nn.ReLU(),
        torch.nn.Linear(16, 10),
    ).eval()
    rules = {"0": "w-square", "Conv2d": "gamma", torch.nn.Linear: "alpha1-beta0"}
    composite = NameMapComposite(  # pooling and activations as cnnvis always treats them
        [
            (("0",), WSquare()),
            (("2",), Gamma(gamma=0.5)),
            (("6", "8"), AlphaBeta(1.0, 0.0)),
            (("4",), Norm()),
            (("1", "3", "7"), Pass()),
        ]
    )
    x = images(size=16)
    ours = cnnvis.explain(
        model, x, "lrp", target=[3, 7], composite="Epsilon", rules=rules, gamma=0.5
    )
    theirs = zennit_relevance(model, x, TARGETS, composite)
    assert correlation(ours.map, theirs) >= 0.999
