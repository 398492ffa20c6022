"""Score-CAM and Ablation-CAM: hand-derived values, the peers' definitions, the exact savings.

Peers compared (CPU, float32, measured values in the comments):
- TorchCAM `ScoreCAM`: w = softmax_k(y_c(X ⊙ M_k) - y_c(X)), M_k normalised at the layer's
  resolution, then upsampled (align_corners=False). cnnvis upsamples, then normalises, so the
  masks differ slightly: maps at the layer's resolution correlate >= 0.999 on ResNet-18
  (upsampled 16x here, 32x at 224x224), 0.984 on TinyCNN (upsampled only 2x).
- pytorch-grad-cam `ScoreCAM`: w = softmax_k(y_c(X ⊙ M_k)), M_k upsampled with
  align_corners=True, then normalised: cnnvis with `align_corners=True` gives its weights.
- pytorch-grad-cam `AblationCAM`: w_k = (y_c - y_c^k) / y_c, channel k set to 0 where the
  activation's minimum is 0 (after a ReLU, as here): the same weights.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import cnnvis
import cnnvis.folding as folding_module
import cnnvis.forwards as forwards_module
from cnnvis.capture import record
from cnnvis.methods.ablation_cam import ablation_cam
from cnnvis.methods.score_cam import channel_scores, mask_plan, score_cam
from cnnvis.targets import UnitTarget

from conftest import TinyCNN

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

AGREEMENT = 0.999


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / (a.norm() * b.norm()))


# ----------------------------------------------------------------------------- hand values


class TwoChannelNet(nn.Module):
    """x (1, 1, 2, 2) -> 1x1 conv (weights [1, -1], bias [0, 5]) -> GAP -> linear
    [[1, 0.5], [0, 1]], float64. With X = [[1, 2], [3, 4]]: A0 = X, A1 = 5 - X."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1).double()
        self.conv.weight.data = torch.tensor([1.0, -1.0], dtype=torch.float64).view(2, 1, 1, 1)
        self.conv.bias.data = torch.tensor([0.0, 5.0], dtype=torch.float64)
        self.fc = nn.Linear(2, 2, bias=False).double()
        self.fc.weight.data = torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=torch.float64)

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3)))


X = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64).view(1, 1, 2, 2)
A0 = X[0, 0]
A1 = 5 - X[0, 0]


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


# The layer is 2x2 like the input, so upsampling is the identity.
# M0 = (A0 - 1) / 3 = [[0, 1/3], [2/3, 1]]: X ⊙ M0 = [[0, 2/3], [2, 4]], mean 5/3
#   -> GAP (5/3, 10/3) -> logits (y0, y1) = (5/3 + 5/3, 10/3) = (10/3, 10/3)
# M1 = (A1 - 1) / 3 = [[1, 2/3], [1/3, 0]]: X ⊙ M1 = [[1, 4/3], [1, 0]], mean 5/6
#   -> GAP (5/6, 25/6) -> logits (5/6 + 25/12, 25/6) = (35/12, 50/12)
# class 0, softmax over channels: w0 = e^(10/3) / (e^(10/3) + e^(35/12)) = sigmoid(5/12)
# class 0, softmax over classes: w0 = sigmoid(0) = 1/2, w1 = sigmoid(35/12 - 50/12)
HAND_SCORE_CAM = {
    "channels": (sigmoid(5 / 12), 1 - sigmoid(5 / 12)),
    "classes": (0.5, sigmoid(-5 / 4)),
}


@pytest.mark.parametrize("softmax", ["channels", "classes"])
def test_score_cam_hand_values(softmax):
    e = cnnvis.explain(TwoChannelNet(), X, "score-cam", layer="conv", target=0, softmax=softmax)
    w0, w1 = HAND_SCORE_CAM[softmax]
    torch.testing.assert_close(e.layer_map[0], w0 * A0 + w1 * A1, rtol=1e-12, atol=1e-12)


def test_score_cam_hand_value_for_a_unit_target():
    # unit conv:0@sum: sum(X ⊙ M0) = 20/3, sum(X ⊙ M1) = 10/3 -> w0 = sigmoid(10/3)
    unit = UnitTarget("conv", 0)
    e = cnnvis.explain(TwoChannelNet(), X, "score-cam", layer="conv", target=unit)
    w0 = sigmoid(10 / 3)
    torch.testing.assert_close(e.layer_map[0], w0 * A0 + (1 - w0) * A1, rtol=1e-12, atol=1e-12)
    with pytest.raises(cnnvis.MethodError, match="unit"):
        cnnvis.explain(
            TwoChannelNet(), X, "score-cam", layer="conv", target=unit, softmax="classes"
        )


def test_ablation_cam_hand_values():
    # unablated: GAP (5/2, 5/2), y0 = 5/2 + 5/4 = 15/4; A0 -> 0: y0 = 5/4, w0 = (15/4 - 5/4) /
    # (15/4) = 2/3; A1 -> 0: y0 = 5/2, w1 = 1/3. Map = 2/3 X + 1/3 (5 - X) = (X + 5) / 3.
    e = cnnvis.explain(TwoChannelNet(), X, "ablation-cam", layer="conv", target=0)
    torch.testing.assert_close(e.layer_map[0], (A0 + 5) / 3, rtol=1e-12, atol=1e-12)
    # a unit of the ablated layer: only its own channel's ablation moves it (w = 1, 0)
    e = cnnvis.explain(
        TwoChannelNet(), X, "ablation-cam", layer="conv", target=UnitTarget("conv", 0)
    )
    torch.testing.assert_close(e.layer_map[0], A0, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- the exact savings


class RedundantNet(nn.Module):
    """conv-ReLU-conv-ReLU-GAP-linear, float64, whose layer `relu2` has an all-zero channel (0),
    a non-zero constant channel (1) and two pairs of identical channels (2 = 3, 4 = 5)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1).double()
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1, stride=2).double()
        self.fc = nn.Linear(8, 5).double()
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)
            self.conv2.weight[:2] = 0
            self.conv2.bias[0], self.conv2.bias[1] = -1.0, 0.7
            self.conv2.weight[3], self.conv2.bias[3] = self.conv2.weight[2], self.conv2.bias[2]
            self.conv2.weight[5], self.conv2.bias[5] = self.conv2.weight[4], self.conv2.bias[4]
        self.relu2 = nn.ReLU()

    def forward(self, x):
        return self.fc(self.relu2(self.conv2(F.relu(self.conv1(x)))).mean(dim=(2, 3)))


def count_rows(model: nn.Module) -> tuple[list[int], torch.utils.hooks.RemovableHandle]:
    rows: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, args: rows.append(args[0].shape[0]))
    return rows, handle


@pytest.mark.parametrize("softmax", ["channels", "classes"])
def test_skipping_constant_and_identical_channels_changes_nothing(softmax):
    model = RedundantNet().eval()
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    rec = record(model, x, ["relu2"])
    act = rec.activations["relu2"]
    assert (act[:, 0] == 0).all() and (act[:, 1] == 0.7).all()
    assert torch.equal(act[:, 2], act[:, 3]) and torch.equal(act[:, 4], act[:, 5])
    rows, handle = count_rows(model)
    try:
        saved = score_cam(rec, "relu2", batch_size=4, softmax=softmax)
        used = sum(rows)
        rows.clear()
        plain = score_cam(rec, "relu2", batch_size=4, softmax=softmax, reuse=False)
    finally:
        handle.remove()
    # plain: 2 images x 8 channels; saved: 2 x (8 - 2 constant - 2 repeated) + 1 zero input
    assert (used, sum(rows)) == (9, 16)
    torch.testing.assert_close(saved, plain, rtol=1e-13, atol=1e-13)
    # per channel, the scores themselves are the same
    torch.testing.assert_close(
        channel_scores(rec, act, 4, softmax == "classes", True),
        channel_scores(rec, act, 4, softmax == "classes", False),
        rtol=1e-13,
        atol=1e-13,
    )


def test_channels_with_the_same_normalised_map_share_one_forward():
    """At conv2 (before the ReLU) channel 3 = 4 x channel 2: the same min-max normalised map,
    the same mask, one forward; channel 5 = -channel 4 is another mask. Channels 0 and 1 are
    constant: one all-zero row."""
    model = RedundantNet().eval()
    with torch.no_grad():
        model.conv2.weight[3], model.conv2.bias[3] = (
            4 * model.conv2.weight[2],
            4 * model.conv2.bias[2],
        )
        model.conv2.weight[5], model.conv2.bias[5] = -model.conv2.weight[4], -model.conv2.bias[4]
    x = torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    rec = record(model, x, ["conv2"])
    act = rec.activations["conv2"].detach()
    rows, _, where = mask_plan(act, reuse=True)
    assert len(rows) == 1 + 5 and where[0, 3] == where[0, 2] and where[0, 5] != where[0, 4]
    saved = score_cam(rec, "conv2", batch_size=4)
    plain = score_cam(rec, "conv2", batch_size=4, reuse=False)
    torch.testing.assert_close(saved, plain, rtol=1e-12, atol=1e-12)


def test_ablation_skips_channels_that_are_already_zero():
    model = RedundantNet().eval()
    x = torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    rec = record(model, x, ["relu2"])
    rows, handle = count_rows(model)
    try:
        cam = ablation_cam(rec, "relu2", batch_size=3)
    finally:
        handle.remove()
    # 1 unablated forward, then 7 rows (6 live channels + 1 check row) in 3 batch-1 forwards
    assert rows == [1, 1, 1, 1]
    act = rec.activations["relu2"][0]
    base = rec.scores[0]
    weights = []
    with torch.no_grad():
        for k in range(8):
            ablated = act.clone()
            ablated[k] = 0
            weights.append((base - model.fc(ablated.mean(dim=(1, 2)))[rec.targets[0]]) / base)
    expected = torch.einsum("k,khw->hw", torch.stack(weights), act)
    torch.testing.assert_close(cam[0], expected, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- batches


@pytest.mark.parametrize("method", ["score-cam", "ablation-cam"])
def test_batch_size_and_batching_images_change_nothing(method):
    model = RedundantNet().eval()
    x = torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    targets = [0, 3, 4]
    maps = [
        cnnvis.explain(model, x, method, layer="relu2", target=targets, batch_size=b).layer_map
        for b in (1, 5, 64)
    ]
    for other in maps[1:]:
        torch.testing.assert_close(other, maps[0], rtol=1e-12, atol=1e-12)
    for i, target in enumerate(targets):
        single = cnnvis.explain(model, x[i : i + 1], method, layer="relu2", target=target)
        torch.testing.assert_close(single.layer_map[0], maps[0][i], rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- the model's state


class RaisesLater(TinyCNN):
    """TinyCNN whose forward raises once `armed` calls have run (the masked/ablated forwards)."""

    def __init__(self, armed: int):
        super().__init__()
        self.armed = armed
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls > self.armed:
            raise RuntimeError("raised on purpose")
        return super().forward(x)


def state(model: nn.Module) -> list[tuple[str, bool, int, int]]:
    return [
        (name, m.training, len(m._forward_hooks), len(m._forward_pre_hooks))
        for name, m in model.named_modules()
    ]


@pytest.mark.parametrize("method", ["score-cam", "ablation-cam"])
def test_model_state_is_restored_also_when_it_raises(method, tiny_input):
    model = TinyCNN()
    model.train()
    model.conv1.eval()  # a mixed state
    before = state(model)
    cnnvis.explain(model, tiny_input, method, layer="relu2")
    assert state(model) == before
    for armed in (1, 2):  # raises in the first masked forward, or in a later one
        model = RaisesLater(armed).train()
        before = state(model)
        with pytest.raises(RuntimeError, match="on purpose"):
            cnnvis.explain(model, tiny_input, method, layer="relu2", batch_size=4)
        assert state(model) == before


def test_bad_parameters_are_method_errors(tiny_cnn, tiny_input):
    for method in ("score-cam", "ablation-cam"):
        with pytest.raises(cnnvis.MethodError, match="batch_size"):
            cnnvis.explain(tiny_cnn, tiny_input, method, layer="relu2", batch_size=0)
    with pytest.raises(cnnvis.MethodError, match="softmax"):
        cnnvis.explain(tiny_cnn, tiny_input, "score-cam", layer="relu2", softmax="logits")


# ----------------------------------------------------------------------------- fallbacks


class ViewNet(TinyCNN):
    """Flattens the feature maps with `.view`, which fails on channels_last memory, so Score-CAM
    falls back to contiguous inputs; its twin (`reshape=True`) flattens with `reshape`."""

    def __init__(self, reshape: bool = False):
        super().__init__()
        self.reshape = reshape
        self.fc = nn.Linear(8 * 8 * 8, 5)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(5, 512, generator=torch.Generator().manual_seed(2)))

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(x.reshape(len(x), -1) if self.reshape else x.view(len(x), -1))


def test_score_cam_falls_back_to_contiguous_inputs(tiny_input, monkeypatch, caplog):
    monkeypatch.setattr(forwards_module, "CHANNELS_LAST_MIN_ELEMENTS", 0)  # tiny inputs too
    model, twin = ViewNet().eval(), ViewNet(reshape=True).eval()
    with pytest.raises(RuntimeError, match="view"):
        model(tiny_input.contiguous(memory_format=torch.channels_last))
    with caplog.at_level("INFO", logger="cnnvis.forwards"):
        a = cnnvis.explain(model, tiny_input, "score-cam", layer="relu2").layer_map
    assert "channels_last forward failed" in caplog.text
    b = cnnvis.explain(twin, tiny_input, "score-cam", layer="relu2").layer_map
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


class ConcatNet(TinyCNN):
    """Concatenates pooled features from before and after `conv2`: a batch-1 prefix with an
    ablated batch at conv2 cannot be concatenated, so Ablation-CAM repeats the input. With
    `shift`, conv2's output is shifted in place (an op that must not reach the ablated batch,
    which is forwarded again after the failed try)."""

    def __init__(self, shift: bool = False):
        super().__init__()
        self.fc = nn.Linear(14, 5)
        self.shift = shift

    def forward(self, x):
        early = self.relu1(self.conv1(x))
        late = self.conv2(early)
        late = self.relu2(late.add_(0.5) if self.shift else late)
        return self.fc(torch.cat([early.mean(dim=(2, 3)), late.mean(dim=(2, 3))], dim=1))


def test_ablation_cam_falls_back_to_repeating_the_input(tiny_input):
    model = ConcatNet().eval()
    rec = record(model, tiny_input, ["relu2"])
    shared = ablation_cam(rec, "relu2", batch_size=5)
    repeated = ablation_cam(rec, "relu2", batch_size=5, share_prefix=False)
    # (y - y_k) / y cancels: rounding differences between batch compositions grow to ~1e-5
    scale = float(repeated.abs().max())
    torch.testing.assert_close(shared, repeated, rtol=1e-4, atol=1e-5 * scale)
    early = model.relu1(model.conv1(tiny_input)).mean(dim=(2, 3)).detach()
    act = rec.activations["relu2"].detach()
    for i in range(3):  # the definition, computed by hand from the activations
        t = rec.targets[i]
        base = rec.scores[i].detach()
        pooled = act[i].mean(dim=(1, 2))
        ablated = pooled - torch.diag(pooled)  # row k: channel k set to 0
        logits = model.fc(torch.cat([early[i].expand(8, -1), ablated], dim=1))[:, t]
        w = (base - logits.detach()) / base
        torch.testing.assert_close(
            shared[i], torch.einsum("k,khw->hw", w, act[i]), atol=1e-5, rtol=1e-5
        )
    # at conv2, whose output is shifted in place: the batch that failed to broadcast is
    # forwarded again as it was
    model = ConcatNet(shift=True).eval()
    rec = record(model, tiny_input, ["conv2"])
    shared = ablation_cam(rec, "conv2", batch_size=5)
    repeated = ablation_cam(rec, "conv2", share_prefix=False)
    torch.testing.assert_close(shared, repeated, rtol=1e-4, atol=1e-5 * scale)


class ChannelsLastNet(nn.Module):
    """conv -> permute to (N, H, W, C) -> a linear `mix` on the last dim (the layer: channels
    last, like Swin's blocks) -> GELU -> mean over H, W -> linear head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.mix = nn.Linear(6, 8)
        self.fc = nn.Linear(8, 5)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):
        h = F.gelu(self.mix(self.conv(x).permute(0, 2, 3, 1)))
        return self.fc(h.mean(dim=(1, 2)))


def test_ablation_cam_ablates_channels_of_a_channels_last_layer(tiny_input):
    model = ChannelsLastNet().eval()
    e = cnnvis.explain(model, tiny_input, "ablation-cam", layer="mix", target=[0, 1, 2])
    with torch.no_grad():
        out = model.mix(model.conv(tiny_input).permute(0, 2, 3, 1))  # (N, 16, 16, 8)
        for i, t in enumerate([0, 1, 2]):
            base = model.fc(F.gelu(out[i]).mean(dim=(0, 1)))[t]
            ablated = out[i].expand(8, -1, -1, -1).clone()
            ablated[torch.arange(8), :, :, torch.arange(8)] = 0
            y = model.fc(F.gelu(ablated).mean(dim=(1, 2)))[:, t]
            expected = torch.einsum("k,hwk->hw", (base - y) / base, out[i])
            torch.testing.assert_close(e.layer_map[i], expected, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- BatchNorm folding


class FoldNet(nn.Module):
    """conv1-BN (foldable); conv2 whose output feeds its BN and a residual sum (not foldable);
    a branch picked by the sign of the input's mean (data-dependent control flow); BatchNorm
    statistics and affine parameters away from (0, 1)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(6)
        self.conv_a, self.bn_a = nn.Conv2d(6, 8, 3, padding=1, stride=2), nn.BatchNorm2d(8)
        self.conv_b, self.bn_b = nn.Conv2d(6, 8, 1, stride=2), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)
        g = torch.Generator().manual_seed(6)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            for bn in (self.bn1, self.bn2, self.bn_a, self.bn_b):
                bn.running_mean.copy_(torch.randn(bn.num_features, generator=g))
                bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        c = self.conv2(h)
        h = F.relu(self.bn2(c) + c)
        h = self.bn_a(self.conv_a(h)) if x.mean() > 0 else self.bn_b(self.conv_b(h))
        return self.fc(h.mean(dim=(2, 3)))


@pytest.fixture
def fold_everything(monkeypatch):
    monkeypatch.setattr(folding_module, "FOLD_MIN_ELEMENTS", 0)  # fold tiny models too


def test_batch_norm_folding_folds_what_only_a_batch_norm_reads(fold_everything):
    model = FoldNet().eval()
    x = torch.randn(4, 3, 12, 12, generator=torch.Generator().manual_seed(7)) + 0.5
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = torch._C._len_torch_function_stack()
    folding = folding_module.BatchNormFolding(model)
    with torch.inference_mode():
        expected = model(x)
        for _ in range(2):  # the probe, then a folded forward
            torch.testing.assert_close(folding(x), expected, rtol=1e-5, atol=1e-5)
        assert sorted(folding.plan) == [0, 2]  # conv1 and conv_a; not conv2 (read twice)
        # the other branch: conv_b where conv_a was planned -> unfolded from then on
        torch.testing.assert_close(folding(-x), model(-x), rtol=0, atol=0)
        assert folding.plan == {}
        torch.testing.assert_close(folding(x), expected, rtol=0, atol=0)
    assert torch._C._len_torch_function_stack() == modes
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_batch_norm_folding_leaves_a_convolution_that_a_hook_reads(fold_everything):
    model = FoldNet().eval()
    seen = []
    handle = model.conv1.register_forward_hook(lambda m, a, out: seen.append(out.sum()))
    try:
        folding = folding_module.BatchNormFolding(model)
        x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(8)) + 0.5
        with torch.inference_mode():
            expected, reads = model(x), list(seen)
            folding(x)
            out = folding(x)
        assert sorted(folding.plan) == [2]
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(seen[-1], reads[0])  # the hook saw conv1's own output
    finally:
        handle.remove()


def test_score_cam_with_folded_batch_norms_is_the_same(fold_everything, tiny_input):
    model = FoldNet().eval()
    x = tiny_input + 0.5
    rec = record(model, x, ["conv_a"])
    folded = score_cam(rec, "conv_a", batch_size=16)
    plain = score_cam(rec, "conv_a", batch_size=16, fold_batch_norm=False)
    torch.testing.assert_close(folded, plain, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- the peers


def torchcam_weights(model, x, layer, class_idx) -> torch.Tensor:
    from torchcam.methods import ScoreCAM

    with ScoreCAM(model, layer, batch_size=32, input_shape=tuple(x.shape[1:])) as extractor:
        with torch.no_grad():
            model(x)
        return extractor._get_weights(class_idx, None)[0]


def grad_cam_weights(cls, model, x, layer, targets, **kwargs) -> torch.Tensor:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = cls(model, [dict(model.named_modules())[layer]], **kwargs)
    cam.batch_size = 32
    found = {}
    original = cam.get_cam_weights

    def keep(*args, **kw):
        found["w"] = original(*args, **kw)
        return found["w"]

    cam.get_cam_weights = keep
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    return torch.as_tensor(found["w"], dtype=torch.float64)


class Case:
    """A seeded model and input, its recording at `layer`, and cnnvis' Score-CAM (computed once)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, layer: str):
        self.model, self.x, self.layer = model, x, layer
        self.rec = record(model, x, [layer])
        self.act = self.rec.activations[layer].detach()
        self.score_cam = score_cam(self.rec, layer)


@pytest.fixture(scope="module")
def resnet18_case():
    """ResNet-18's layer3 at 48x48 input: 256 channels of 3x3 (kept small for the test's time;
    the benchmark compares layer4 at 224x224)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    return Case(
        model, torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(1)), "layer3"
    )


@pytest.fixture(scope="module")
def tiny_case():
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    return Case(TinyCNN().eval(), x, "relu2")


def raw(weights: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    return torch.einsum("nk,nkhw->nhw", weights.double(), act.detach().double())


def test_score_cam_agrees_with_torchcam(resnet18_case):
    """Measured 1 - 1e-12. On TinyCNN, whose 8x8 maps are upsampled only 2x, the two mask
    normalisations (before / after upsampling) differ more: 0.984 (and TorchCAM vs
    pytorch-grad-cam 0.992): a difference of definition, pinned by the hand-value tests."""
    pytest.importorskip("torchcam")
    case = resnet18_case
    theirs = [
        raw(
            torchcam_weights(case.model, case.x[i : i + 1], case.layer, int(t)), case.act[i : i + 1]
        )
        for i, t in enumerate(case.rec.targets)
    ]
    for i in range(len(case.x)):
        assert correlation(case.score_cam[i], theirs[i][0]) >= AGREEMENT


@pytest.mark.parametrize("name", ["tiny_case", "resnet18_case"])
def test_score_cam_with_aligned_corners_is_pytorch_grad_cams(name, request):
    """The same weights to 1e-4 relative; the default (align_corners=False) maps correlate
    0.971 to 0.998 with pytorch-grad-cam's."""
    from pytorch_grad_cam import ScoreCAM

    case = request.getfixturevalue(name)
    weights = grad_cam_weights(ScoreCAM, case.model, case.x, case.layer, case.rec.targets)
    scores = channel_scores(case.rec, case.act, align_corners=True)
    torch.testing.assert_close(scores.double().softmax(dim=1), weights, rtol=1e-4, atol=1e-7)
    ours = score_cam(case.rec, case.layer, align_corners=True) if name == "tiny_case" else None
    for i in range(len(case.x)):
        if ours is not None:
            assert correlation(ours[i], raw(weights, case.act)[i]) >= AGREEMENT
        assert correlation(case.score_cam[i], raw(weights, case.act)[i]) >= 0.97


@pytest.mark.parametrize("name", ["tiny_case", "resnet18_case"])
def test_ablation_cam_agrees_with_pytorch_grad_cam(name, request):
    from pytorch_grad_cam import AblationCAM

    case = request.getfixturevalue(name)
    assert case.act.min() == 0  # after a ReLU: pytorch-grad-cam ablates to 0, like the paper
    weights = grad_cam_weights(
        AblationCAM, case.model, case.x, case.layer, case.rec.targets, batch_size=32
    )
    theirs = raw(weights, case.act)
    ours = ablation_cam(case.rec, case.layer)
    for i in range(len(case.x)):  # measured 1.0
        assert correlation(ours[i], theirs[i]) >= AGREEMENT
    scale = float(theirs.abs().max())
    torch.testing.assert_close(ours.double(), theirs, rtol=1e-3, atol=1e-4 * scale)
