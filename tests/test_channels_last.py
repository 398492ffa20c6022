"""The recorded forward runs in channels_last memory format on big CPU float32 batches
(`forwards.channels_last_pays`): every method's map equals the contiguous run's up to float32
rounding, comes back in the standard layout, and a model that cannot take channels_last
(`.view` on an activation) falls back to a contiguous forward."""

from __future__ import annotations

import pytest
import torch

import cnnvis
from cnnvis import capture, forwards
from cnnvis.methods import list_methods

from conftest import TinyCNN

PARAMS = {
    "integrated-gradients": {"steps": 4},
    "smoothgrad": {"samples": 2},
    "rise": {"masks": 8},
    "occlusion": {"window": 112, "stride": 112},
}


class ViewNet(TinyCNN):
    """TinyCNN whose head flattens with `.view`, which channels_last memory cannot take."""

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        flat = x.view(x.shape[0], -1)  # C, H, W merged: needs contiguous memory
        return self.fc(flat.reshape(x.shape[0], x.shape[1], -1).mean(2))


@pytest.fixture(scope="module")
def big_batch() -> torch.Tensor:
    x = torch.randn(7, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    assert x.numel() >= forwards.CHANNELS_LAST_MIN_ELEMENTS
    return x


def test_the_recorded_forward_is_channels_last_on_big_cpu_batches(big_batch):
    model = TinyCNN().eval()
    rec = capture.record(model, big_batch, ["conv2"])
    assert rec.activations["conv2"].is_contiguous(memory_format=torch.channels_last)
    assert rec.inputs.is_contiguous()
    small = capture.record(model, big_batch[:1], ["conv2"])
    assert small.activations["conv2"].is_contiguous()  # below the threshold: as it was
    assert not forwards.channels_last_pays(big_batch.double())


# D-RISE explains a detector's box, not a classifier's class (tests/detection covers it)
@pytest.mark.parametrize("method", [m.name for m in list_methods() if m.name != "drise"])
def test_every_method_gives_the_contiguous_map(method, big_batch, monkeypatch):
    model = TinyCNN().eval()
    layer = "relu2" if method == "cam" else "conv2"  # CAM: the layer that feeds the pooling
    kwargs = {"layer": layer, **PARAMS.get(method, {})}
    fast = cnnvis.explain(model, big_batch, method, **kwargs)
    monkeypatch.setattr(forwards, "CHANNELS_LAST_MIN_ELEMENTS", 10**12)
    plain = cnnvis.explain(model, big_batch, method, **kwargs)
    assert fast.map.is_contiguous() and fast.map.shape == plain.map.shape
    torch.testing.assert_close(fast.map, plain.map, rtol=1e-4, atol=1e-5 * plain.map.abs().max())


def test_a_model_that_cannot_take_channels_last_runs_contiguous(big_batch):
    model = ViewNet().eval()
    with pytest.raises(RuntimeError, match="view"):
        model(big_batch.contiguous(memory_format=torch.channels_last))
    rec = capture.record(model, big_batch, ["conv2"], rules=True)
    assert rec.activations["conv2"].is_contiguous() and rec.state.calls == 2
    ours = cnnvis.explain(model, big_batch, "guided-backprop").map
    reference = cnnvis.explain(TinyCNN().eval(), big_batch, "guided-backprop").map
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-6)


class FailingNet(TinyCNN):
    """Raises its own RuntimeError and counts its calls."""

    calls = 0

    def forward(self, x):
        FailingNet.calls += 1
        raise RuntimeError("broken model")


def test_a_model_that_fails_for_its_own_reasons_runs_once(big_batch):
    with pytest.raises(RuntimeError, match="broken model"):
        capture.record(FailingNet().eval(), big_batch)
    assert FailingNet.calls == 1
