"""Unusual models: tuple, dict and Hugging Face-style outputs (`output=` / `--output`), no
spatial layer, NaN or infinite outputs and gradients, float16 / bfloat16 weights, frozen
parameters, train mode, `nn.DataParallel`, TorchScript (scripted and traced), and calls inside
`torch.no_grad()`, `torch.inference_mode()` and `torch.autocast`.

Each is either explained correctly (checked against the same computation on a plain float32
model) or refused with a typed error that names what to do; the user's model is never changed.
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

import cnnvis
from cnnvis.cli import main
from cnnvis.errors import Hint
from cnnvis.model import _TWINS, LoadedModel, Preprocess

from conftest import TinyCNN

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")

SIZE = 16
FAST = {
    "integrated-gradients": {"steps": 4},
    "smoothgrad": {"samples": 3},
    "rise": {"masks": 8},
    "occlusion": {"window": 8, "stride": 8},
}
METHODS = [m.name for m in cnnvis.list_methods()]


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))


def tiny() -> TinyCNN:
    return TinyCNN().eval()


def maps_equal(a: cnnvis.Explanation, b: cnnvis.Explanation) -> bool:
    return torch.equal(a.map, b.map) and a.targets == b.targets


def no_hooks(model: nn.Module) -> bool:
    return all(
        not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
        for m in model.modules()
    )


# ----------------------------------------------------------------------------- outputs


class TupleNet(nn.Module):
    """(logits, aux): the body's logits, and 2 x its first three."""

    def __init__(self) -> None:
        super().__init__()
        self.body = tiny()

    def forward(self, x):
        logits = self.body(x)
        return logits, 2 * logits[:, :3]


class DictNet(TupleNet):
    def __init__(self, keys: tuple[str, str] = ("scores", "aux")) -> None:
        super().__init__()
        self.keys = keys

    def forward(self, x):
        logits, aux = super().forward(x)
        return {self.keys[0]: logits, self.keys[1]: aux, "note": "not a tensor"}


@dataclass
class HFOutput:
    """Like a Hugging Face ModelOutput with attributes: `.logits`, `.hidden_states`."""

    logits: torch.Tensor
    hidden_states: torch.Tensor


class HFNet(TupleNet):
    def forward(self, x):
        logits, aux = super().forward(x)
        return HFOutput(logits=logits, hidden_states=aux)


class AuxHead(nn.Module):
    """What `output="aux"` must explain: 2 x the first three logits, as a plain model."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x):
        return 2 * self.body(x)[:, :3]


@pytest.mark.parametrize("method", ["gradient", "grad-cam", "guided-backprop"])
def test_tuple_dict_and_hf_outputs_explain_the_chosen_logits(method, x):
    wrapped = TupleNet()
    plain = wrapped.body
    aux = AuxHead(plain)
    layer = "body.conv2"
    want = cnnvis.explain(plain, x, method, layer="conv2", target=[1, 2])
    want_aux = cnnvis.explain(aux, x, method, layer=layer, target=[1, 2])
    cases = [
        (TupleNet, None, want),
        (TupleNet, 0, want),
        (TupleNet, "1", want_aux),
        (TupleNet, -1, want_aux),
        (lambda: DictNet(("logits", "aux")), None, want),  # 'logits' is found by name
        (DictNet, "scores", want),
        (DictNet, "aux", want_aux),
        (HFNet, None, want),
        (HFNet, "hidden_states", want_aux),
    ]
    for build, output, expected in cases:
        model = build()
        model.body.load_state_dict(plain.state_dict())
        got = cnnvis.explain(model, x, method, layer=layer, target=[1, 2], output=output)
        assert torch.equal(got.map, expected.map), (build, output)


def test_ambiguous_or_wrong_output_lists_the_keys(x):
    with pytest.raises(cnnvis.ModelError) as caught:
        cnnvis.explain(DictNet(), x, "gradient")
    message = str(caught.value)
    assert "without 'logits'" in message and "pass output=KEY" in message
    assert "scores (2, 5), aux (2, 3), note" in message
    with pytest.raises(cnnvis.ModelError, match=r"no entry 'logit'.* scores \(2, 5\)"):
        cnnvis.explain(DictNet(), x, "gradient", output="logit")
    with pytest.raises(cnnvis.ModelError, match=r"no entry 2; .*0 \(2, 5\), 1 \(2, 3\)"):
        cnnvis.classify(TupleNet(), x, output=2)
    with pytest.raises(cnnvis.ModelError, match="returns a single tensor"):
        cnnvis.explain(tiny(), x, "gradient", output="logits")
    with pytest.raises(cnnvis.ModelError, match=r"\(N, classes\), got \(2, 8, 8, 8\)"):
        cnnvis.explain(nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1)), x, "gradient")


def test_cli_output_selector(tmp_path: Path, capsys):
    """A TorchScript file whose forward returns a dict: --output picks the logits."""
    scripted = torch.jit.script(DictScripted())
    path = tmp_path / "dict.ts"
    scripted.save(str(path))
    argv = ["classify", "sample:coffee", "--model", str(path), "--json"]
    assert main(argv) == cnnvis.ModelError.exit_code
    err = capsys.readouterr().err
    assert "pass --output KEY to choose one of scores (1, 5), aux (1, 3)" in err
    assert main([*argv, "--output", "scores", "--top-k", "2"]) == 0
    got = json.loads(capsys.readouterr().out)["images"][0]["predictions"]
    lm = LoadedModel(scripted.body, preprocess=Preprocess())
    want = cnnvis.classify(lm, "sample:coffee", top_k=2)
    assert [p["index"] for p in got] == [p.index for p in want]


class DictScripted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = tiny()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.body(x)
        return {"scores": logits, "aux": logits[:, :3]}


# ----------------------------------------------------------------------------- no spatial layer


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(3 * SIZE * SIZE, 12), nn.ReLU(), nn.Linear(12, 4)
    ).eval()


def test_no_spatial_layer_cam_methods_say_so_pixel_methods_work(x):
    model = mlp()
    with pytest.raises(cnnvis.LayerError, match=r"no layer with a spatial .* use a pixel method"):
        cnnvis.explain(model, x, "grad-cam")
    with pytest.raises(cnnvis.LayerError, match=r"layer 1 outputs shape \(2, 12\); CAM methods"):
        cnnvis.explain(model, x, "grad-cam", layer="1")
    result = cnnvis.explain(model, x, "gradient", target=[0, 3])
    leaf = x.clone().requires_grad_(True)
    scores = model(leaf).gather(1, torch.tensor([[0], [3]])).sum()
    (expected,) = torch.autograd.grad(scores, leaf)
    torch.testing.assert_close(result.map, expected)
    for method in ("guided-backprop", "integrated-gradients", "occlusion"):
        assert torch.isfinite(cnnvis.explain(model, x, method, **FAST.get(method, {})).map).all()


# ----------------------------------------------------------------------------- NaN / infinity


class Broken(nn.Module):
    """TinyCNN whose output is NaN or infinite for the images listed in `bad`."""

    def __init__(self, value: float, bad: list[int]) -> None:
        super().__init__()
        self.body, self.value, self.bad = tiny(), value, bad

    def forward(self, x):
        out = self.body(x)
        mask = torch.zeros_like(out)
        mask[[i for i in self.bad if i < len(out)]] = self.value
        return out + mask


class SqrtNet(nn.Module):
    """Finite output, but sqrt(x * [x > 0]) has the gradient inf * 0 = NaN where x <= 0."""

    def __init__(self) -> None:
        super().__init__()
        self.body = tiny()

    def forward(self, x):
        return self.body(torch.sqrt(x * (x > 0)))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_or_infinite_outputs_are_a_model_error(value, x):
    model = Broken(value, bad=[1])
    for call in (
        lambda: cnnvis.explain(model, x, "grad-cam"),
        lambda: cnnvis.explain(model, x, "occlusion", **FAST["occlusion"]),
        lambda: cnnvis.classify(model, x),
    ):
        with pytest.raises(cnnvis.ModelError, match=r"NaN or infinite values for image\(s\) \[1\]"):
            call()
    assert no_hooks(model)


def test_a_nan_map_is_a_method_error_never_a_picture(x):
    with pytest.raises(cnnvis.MethodError, match="non-finite values"):
        cnnvis.explain(SqrtNet(), x, "gradient")


def test_cli_reports_a_nan_model(tmp_path: Path, capsys):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 8, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model.append(nn.Linear(4, 3))
    with torch.no_grad():
        model[-1].bias[1] = float("nan")
    torch.save(model, tmp_path / "nan.pt")
    out = tmp_path / "out"
    code = main(
        [
            "explain",
            "sample:cat",
            "--model",
            str(tmp_path / "nan.pt"),
            "--trust-model-file",
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == cnnvis.ModelError.exit_code and "Traceback" not in err
    assert "NaN or infinite values for image(s) [0]" in err and "check the model's weights" in err
    assert not list(out.rglob("*.png"))  # nothing drawn


# ----------------------------------------------------------------------------- half precision


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", ["gradient", "guided-backprop", "grad-cam", "score-cam"])
def test_half_precision_models_are_explained_in_float32(dtype, method, x):
    """The maps are those of a float32 copy of the (rounded) weights, in float32; the user's
    model keeps its dtype, tensors, flags, and gets no hook."""
    model = tiny().to(dtype)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reference = copy.deepcopy(model).float()
    got = cnnvis.explain(model, x, method, target=[0, 4])
    want = cnnvis.explain(reference, x, method, target=[0, 4])
    assert got.map.dtype == torch.float32 and torch.equal(got.map, want.map)
    assert any("float32 copy" in note for note in got.notes)
    assert all(p.dtype == dtype for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert no_hooks(model) and not model.training
    half_input = cnnvis.explain(model, x.to(dtype), method, target=[0, 4])
    want_half = cnnvis.explain(reference, x.to(dtype).float(), method, target=[0, 4])
    assert torch.equal(half_input.map, want_half.map)


def test_the_float32_copy_is_reused_until_the_weights_change(x):
    model = tiny().to(torch.bfloat16)
    first = cnnvis.explain(model, x, "gradient", target=0)
    twin = _TWINS[model][1]
    cnnvis.explain(model, x, "grad-cam", target=0)
    cnnvis.classify(model, x)
    assert _TWINS[model][1] is twin
    with torch.no_grad():
        model.fc.weight.mul_(-1)  # an in-place update (as an optimizer step makes)
    flipped = cnnvis.explain(model, x, "gradient", target=0)
    assert _TWINS[model][1] is not twin
    torch.testing.assert_close(flipped.map, -first.map)


def test_half_precision_classify_matches_the_float32_copy(x):
    model = tiny().half()
    got = cnnvis.classify(model, x, top_k=3)
    want = cnnvis.classify(copy.deepcopy(model).float(), x, top_k=3)
    assert [[p.index for p in row] for row in got] == [[p.index for p in row] for row in want]


# ----------------------------------------------------------------------------- frozen, train


def test_frozen_parameters_still_give_input_gradients(x):
    frozen = tiny().requires_grad_(False)
    free = tiny()
    for method in ("gradient", "guided-backprop", "grad-cam", "integrated-gradients"):
        kw = FAST.get(method, {})
        got = cnnvis.explain(frozen, x, method, target=[1, 2], **kw)
        assert got.map.abs().sum() > 0
        assert torch.equal(got.map, cnnvis.explain(free, x, method, target=[1, 2], **kw).map)
    assert all(not p.requires_grad and p.grad is None for p in frozen.parameters())


class BNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        h = self.drop(torch.relu(self.bn(self.conv(x))))
        return self.fc(h.mean(dim=(2, 3)))


def test_train_mode_is_restored_and_batchnorm_statistics_are_untouched(x):
    model = BNNet()
    with torch.no_grad():  # non-trivial running statistics
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
    expected = {m: cnnvis.explain(model.eval(), x, m, target=1) for m in ("gradient", "grad-cam")}
    model.train()
    stats = {k: v.clone() for k, v in model.bn.state_dict().items()}
    for method, want in expected.items():
        got = cnnvis.explain(model, x, method, target=1)
        assert torch.equal(got.map, want.map)  # eval-mode maps: no dropout, running stats
    assert model.training and model.bn.training and model.drop.training
    for key, value in model.bn.state_dict().items():
        assert torch.equal(value, stats[key]), key  # running_mean/var, num_batches_tracked


# ----------------------------------------------------------------------------- DataParallel


@pytest.mark.skipif(torch.cuda.is_available(), reason="on CPU, DataParallel calls its module")
def test_data_parallel_takes_both_layer_names(x):
    plain = tiny()
    wrapped = nn.DataParallel(plain)
    want = cnnvis.explain(plain, x, "grad-cam", layer="conv2", target=[0, 1])
    for layer in ("conv2", "module.conv2"):
        got = cnnvis.explain(wrapped, x, "grad-cam", layer=layer, target=[0, 1])
        assert torch.equal(got.map.cpu(), want.map)
    assert cnnvis.default_layer(wrapped, (1, 3, SIZE, SIZE)) == cnnvis.default_layer(
        plain, (1, 3, SIZE, SIZE)
    )
    swept = cnnvis.sweep(wrapped, x, "grad-cam", layers=["module.conv1", "conv2"], target=0)
    assert swept.layers == ["conv1", "conv2"]
    assert no_hooks(wrapped) and not plain.training


# ----------------------------------------------------------------------------- TorchScript


def scripted_models(x: torch.Tensor) -> dict[str, nn.Module]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "script": torch.jit.script(tiny()),
            "trace": torch.jit.trace(tiny(), x[:1]),
        }


def test_torchscript_which_methods_work(x):
    """Every registered method on a scripted and a traced model: the ones that need no layer
    and no guided/deconvnet rule give the eager model's maps; the others raise MethodError
    (whose hint names the methods that work)."""
    works = {m.name for m in cnnvis.list_methods(torchscript=True)}
    eager = tiny()
    for kind, model in scripted_models(x).items():
        for method in METHODS:
            if method == "drise":  # explains a detector's box; a class target is refused
                continue
            kw = FAST.get(method, {})
            if method in works:
                got = cnnvis.explain(model, x, method, target=[2, 3], **kw)
                want = cnnvis.explain(eager, x, method, target=[2, 3], **kw)
                torch.testing.assert_close(got.map, want.map, rtol=1e-4, atol=1e-6)
            else:
                with pytest.raises(cnnvis.MethodError) as caught:
                    cnnvis.explain(model, x, method, target=[2, 3], **kw)
                assert "TorchScript" in str(caught.value), (kind, method)
                assert caught.value.hint == Hint("methods", "torchscript"), (kind, method)
                assert "list_methods(torchscript=True)" in str(caught.value), (kind, method)
    assert {"gradient", "integrated-gradients", "occlusion", "rise"} <= works
    assert not {"grad-cam", "guided-backprop", "deconvnet", "guided-grad-cam"} & works


def test_torchscript_layers_and_default_layer(x):
    model = scripted_models(x)["script"]
    layers = cnnvis.list_layers(model, (1, 3, SIZE, SIZE))
    assert {info.name for info in layers} >= {"conv1", "conv2", "fc"}
    assert all(info.output_shape is None for info in layers)
    with pytest.raises(cnnvis.LayerError, match=r"TorchScript model.*methods that work"):
        cnnvis.default_layer(model, (1, 3, SIZE, SIZE))


def test_cli_torchscript_file(tmp_path: Path, capsys):
    path = tmp_path / "tiny.ts"
    torch.jit.script(tiny()).save(str(path))
    base = ["explain", "sample:cat", "--model", str(path), "--out", str(tmp_path / "out")]
    assert main([*base, "--method", "grad-cam"]) == cnnvis.LayerError.exit_code
    err = capsys.readouterr().err
    assert "TorchScript model" in err and "methods that work: gradient," in err  # the CLI lists
    assert main([*base, "--method", "gradient"]) == 0
    assert (tmp_path / "out" / "cat" / "gradient.png").is_file()


# ----------------------------------------------------------------------------- grad modes


@pytest.mark.parametrize("method", ["gradient", "guided-backprop", "grad-cam", "smoothgrad"])
def test_no_grad_inference_mode_and_autocast_give_the_same_maps(method, x):
    model = tiny()
    kw = FAST.get(method, {})
    want = cnnvis.explain(model, x, method, target=[0, 1], **kw)
    contexts = [
        torch.no_grad,
        torch.inference_mode,
        lambda: torch.autocast("cpu", dtype=torch.bfloat16),
    ]
    for context in contexts:
        with context():
            got = cnnvis.explain(model, x, method, target=[0, 1], **kw)
        assert got.map.dtype == torch.float32 and torch.equal(got.map, want.map), context
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    with torch.inference_mode():
        inference_input = x.clone()
    assert torch.equal(
        cnnvis.explain(model, inference_input, method, target=[0, 1], **kw).map, want.map
    )


def test_a_model_built_under_inference_mode_is_a_model_error(x):
    with torch.inference_mode():
        model = tiny()
    with pytest.raises(cnnvis.ModelError, match=r"created under torch.inference_mode"):
        cnnvis.explain(model, x, "gradient")
