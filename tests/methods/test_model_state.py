"""Every registered method x many architectures: cnnvis must leave the user's model as it was.

Generated from the registry (`cnnvis.list_methods()`), so a new method is audited as soon as it
is registered. For each (architecture, method):

- the map is finite and has the right shape, or the method raises `cnnvis.MethodError` (e.g.
  `cam` without a global-average-pool + linear head), never anything else;
- a full audit of the model before/after (`snapshot` / `assert_unchanged`): every module's
  identity, type, `training` flag, `inplace` flag and attribute names, every hook dict (module,
  global and parameter-tensor hooks), every parameter's identity, `requires_grad` and `.grad`
  (a pre-existing `.grad` must be left identical, a missing one missing), the state_dict
  tensors, grad mode / inference mode / torch-function-mode stack, and the input tensor — after
  a normal call, in train mode, and after forced failures (target out of range, a target list of
  the wrong length, a layer that does not exist, a forward hook that raises mid-way);
- the same result under `torch.no_grad()` and `torch.inference_mode()`, in train mode, on two
  calls (bit for bit), and for a batch of 3 as for 3 single images (in float64, see
  `float64_twin`).

Multi-pass methods get cheap settings (`fast_params`); methods that cost one forward per channel
run on the small architectures only (`PER_CHANNEL`). VGG11, Inception v3 and DenseNet-121 are
marked slow (most of the time; still run in CI): `-m "not slow"` for a quick loop.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torch.nn.modules.module as torch_module
import torchvision
from torch import nn

import cnnvis

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

METHODS = [info.name for info in cnnvis.list_methods()]
TARGETS = [1, 2, 3]  # one per image of the batch of 3
MUST_RUN = {"gradient", "guided-backprop", "deconvnet", "grad-cam", "guided-grad-cam"}
# Methods whose cost is one forward per channel of the layer (Score-CAM, Ablation-CAM): 512 to
# 2048 forwards per image on the torchvision models, minutes per call on 2 CPU cores. They run
# on the small architectures only (<= 64 channels at the default layer).
PER_CHANNEL = {info.name for info in cnnvis.list_methods() if info.per_channel}
SMALL_ARCHS = {"tiny", "inplace_reused", "densenet_slim"}


def fast_params(method: str, size: int) -> dict[str, Any]:
    """Cheap settings for the multi-pass methods (the audit does not need accurate maps)."""
    return {
        "integrated-gradients": {"steps": 4},
        "smoothgrad": {"samples": 4},
        "occlusion": {"window": size // 2, "stride": size // 2},
        "rise": {"masks": 8},
        "feature-ablation": {"features": "grid", "cell": size // 2},
        "kernel-shap": {"features": "grid", "cell": size // 2, "samples": 8},
        "lime": {"features": "grid", "cell": size // 2, "samples": 8},
        "shapley-sampling": {"features": "grid", "cell": size // 2, "samples": 2},
    }.get(method, {})


# ----------------------------------------------------------------------------- tiny models


class TinyNet(nn.Module):
    """conv-BN-ReLU-conv-ReLU-dropout-GAP-linear, seeded: BN and dropout make train mode matter."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.relu2 = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = self.relu1(self.bn(self.conv1(x)))
        x = self.drop(self.relu2(self.conv2(x)))
        return self.fc(self.pool(x).flatten(1))


class InplaceReusedNet(nn.Module):
    """One `nn.ReLU(inplace=True)` module applied twice (as in ResNet's BasicBlock); with
    `twin=True` the same network with two separate out-of-place ReLUs."""

    def __init__(self, twin: bool = False, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU(inplace=not twin)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        if twin:
            self.relu2 = nn.ReLU()
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = self.relu(self.conv1(x))
        x = self.conv2(x)
        x = self.relu2(x) if hasattr(self, "relu2") else self.relu(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def seeded(module: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return module


def _default_model() -> nn.Module:
    """The offline default architecture (EfficientNet-Lite0, ReLU6), random init."""
    try:
        return cnnvis.load_model(weights=None).module
    except Exception:  # zoo.py not ready: the same architecture straight from timm
        import timm

        return timm.create_model("tf_efficientnet_lite0", pretrained=False)


ARCHS: dict[str, tuple[Callable[[], nn.Module], int]] = {
    "tiny": (lambda: seeded(TinyNet()), 32),
    "inplace_reused": (lambda: seeded(InplaceReusedNet()), 32),
    "vgg11": (lambda: torchvision.models.vgg11(weights=None), 64),
    "resnet18": (lambda: torchvision.models.resnet18(weights=None), 64),
    "densenet121": (lambda: torchvision.models.densenet121(weights=None), 64),
    # torchvision's DenseNet class (functional ReLU, concatenations) with 32 final channels
    "densenet_slim": (
        lambda: torchvision.models.DenseNet(
            growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2, num_classes=10
        ),
        32,
    ),
    "inception_v3": (lambda: torchvision.models.inception_v3(weights=None), 160),
    "mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(weights=None), 64),
    "efficientnet_lite0": (_default_model, 64),
}
# Architectures whose default layer feeds global average pooling and one linear layer.
GAP_LINEAR_HEADS = {"tiny", "inplace_reused", "resnet18", "inception_v3", "efficientnet_lite0"}


def expected_outcome(arch: str, method: str) -> str:
    """'run', 'MethodError', or 'either' (a method registered after these tests were written)."""
    if method in MUST_RUN:
        return "run"
    if method == "cam":
        return "run" if arch in GAP_LINEAR_HEADS else "MethodError"
    return "either"


# ----------------------------------------------------------------------------- the audit


HOOK_ATTRS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_is_full_backward_hook",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)
GLOBAL_HOOKS = sorted(
    name
    for name in dir(torch_module)
    if name.startswith("_global_") and isinstance(getattr(torch_module, name), dict)
)


def _hooks(container: Any) -> tuple[tuple[Any, Any], ...] | Any:
    """A hook dict as ((key, hook object), ...); hooks are functions, which compare by
    identity, so `==` on two of these tells whether the same hooks are registered."""
    if isinstance(container, dict):
        return tuple(container.items())
    return container


@dataclass
class State:
    """Everything about a model (and its input) that explaining it must not change."""

    modules: list[tuple[str, int, type, bool, Any, frozenset[str]]]
    hooks: dict[tuple[str, str], Any]
    global_hooks: dict[str, Any]
    params: list[tuple[str, int, bool, Any, Any, Any]]
    grads: dict[str, torch.Tensor | None]
    tensors: dict[str, torch.Tensor]
    modes: tuple[bool, bool, int]
    input: tuple[torch.Tensor | None, int, bool, bool]
    notes: list[str] = field(default_factory=list)


def model_tensors(model: nn.Module, clone: bool = True) -> dict[str, torch.Tensor]:
    """The state_dict tensors (parameters and buffers), cloned or by reference."""
    state = model.state_dict()
    return {k: v.detach().clone() if clone else v for k, v in state.items()}


def snapshot(
    model: nn.Module,
    x: torch.Tensor | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
) -> State:
    """Record the model's state; `tensors` reuses an earlier clone of the state_dict (cloning a
    large model for every check is slow) — pass `model_tensors(model)` taken while pristine."""
    named = list(model.named_modules())
    return State(
        modules=[
            (n, id(m), type(m), m.training, getattr(m, "inplace", None), frozenset(vars(m)))
            for n, m in named
        ],
        hooks={
            (n, attr): _hooks(getattr(m, attr))
            for n, m in named
            for attr in HOOK_ATTRS
            if hasattr(m, attr)
        },
        global_hooks={name: _hooks(getattr(torch_module, name)) for name in GLOBAL_HOOKS},
        params=[
            (
                n,
                id(p),
                p.requires_grad,
                id(p.grad) if p.grad is not None else None,
                _hooks(p._backward_hooks),
                _hooks(getattr(p, "_post_accumulate_grad_hooks", None)),
            )
            for n, p in model.named_parameters()
        ],
        grads={
            n: None if p.grad is None else p.grad.detach().clone()
            for n, p in model.named_parameters()
        },
        tensors=model_tensors(model) if tensors is None else tensors,
        modes=(
            torch.is_grad_enabled(),
            torch.is_inference_mode_enabled(),
            torch._C._len_torch_function_stack(),
        ),
        input=(
            None if x is None else x.detach().clone(),
            0 if x is None else x._version,
            False if x is None else x.requires_grad,
            True if x is None else x.grad is None,
        ),
    )


def differences(before: State, model: nn.Module, x: torch.Tensor | None = None) -> list[str]:
    """What changed since `before` (an empty list when nothing did)."""
    after = snapshot(model, x, tensors=model_tensors(model, clone=False))
    diffs = []
    if before.modules != after.modules:
        changed = [a for a, b in zip(before.modules, after.modules, strict=False) if a != b]
        diffs.append(f"modules (identity/type/training/inplace/attributes) changed: {changed[:3]}")
    for key, hooks in before.hooks.items():  # hook objects compare by identity
        if after.hooks.get(key) != hooks:
            diffs.append(f"hooks {key}: {hooks} -> {after.hooks.get(key)}")
    if before.hooks.keys() != after.hooks.keys():
        diffs.append("hook dicts appeared or disappeared")
    for name, hooks in before.global_hooks.items():
        if after.global_hooks[name] != hooks:
            diffs.append(f"global hooks {name}: {hooks} -> {after.global_hooks[name]}")
    if before.params != after.params:
        diffs.append("parameters (identity/requires_grad/.grad identity/tensor hooks) changed")
    for name, grad in before.grads.items():
        now = after.grads[name]
        if (grad is None) != (now is None) or (grad is not None and not torch.equal(grad, now)):
            diffs.append(f".grad of {name} changed")
    if before.tensors.keys() != after.tensors.keys():
        diffs.append("state_dict keys changed")
    for name, tensor in before.tensors.items():
        if name in after.tensors and not torch.equal(tensor, after.tensors[name]):
            diffs.append(f"state_dict[{name!r}] changed")
    if before.modes != after.modes:
        diffs.append(f"(grad mode, inference mode, function modes) {before.modes} -> {after.modes}")
    x0, version, requires_grad, no_grad = before.input
    if x is not None and x0 is not None:
        if not torch.equal(x0, x.detach()) or x._version != version:
            diffs.append("the input tensor was modified")
        if x.requires_grad != requires_grad or (x.grad is None) != no_grad:
            diffs.append("the input's requires_grad/.grad changed")
    return diffs


def assert_unchanged(before: State, model: nn.Module, x: torch.Tensor | None = None) -> None:
    diffs = differences(before, model, x)
    assert not diffs, "\n".join(diffs)


# ----------------------------------------------------------------------------- fixtures


@dataclass
class Arch:
    name: str
    model: nn.Module
    x: torch.Tensor  # (3, 3, S, S)
    tensors: dict[str, torch.Tensor]  # pristine clone of the state_dict
    hook_layer: str  # a module in the middle of the forward, for the raising hook
    cache: dict[str, Any] = field(default_factory=dict)

    def snapshot(self, x: torch.Tensor | None = None) -> State:
        return snapshot(self.model, self.x if x is None else x, tensors=self.tensors)

    def assert_unchanged(self, before: State, x: torch.Tensor | None = None) -> None:
        assert_unchanged(before, self.model, self.x if x is None else x)


def _prepare(model: nn.Module) -> None:
    """Eval mode, a pre-existing `.grad` on every other parameter, one frozen parameter."""
    model.eval()
    g = torch.Generator().manual_seed(5)
    params = list(model.parameters())
    for i, p in enumerate(params):
        if i % 2 == 1:
            p.grad = torch.randn(p.shape, generator=g)
    params[0].requires_grad_(False)


LARGE_ARCHS = {"vgg11", "inception_v3", "densenet121"}  # ~75% of this file's time


@pytest.fixture(
    scope="module",
    params=[pytest.param(n, marks=pytest.mark.slow) if n in LARGE_ARCHS else n for n in ARCHS],
)
def arch(request) -> Arch:
    name = request.param
    build, size = ARCHS[name]
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build()
    _prepare(model)
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    ran = [i.name for i in cnnvis.list_layers(model, (1, 3, size, size)) if i.output_shape]
    leaves = [n for n in ran if not list(dict(model.named_modules())[n].children())]
    return Arch(name, model, x, model_tensors(model), leaves[len(leaves) // 2])


def skip_costly(arch: Arch, method: str) -> None:
    if method in PER_CHANNEL and arch.name not in SMALL_ARCHS:
        pytest.skip(f"{method} costs one forward per channel; audited on {sorted(SMALL_ARCHS)}")


def run(arch: Arch, method: str, x: torch.Tensor | None = None, target: Any = TARGETS):
    """explain(...), checking the outcome against `expected_outcome`: an Explanation, or None
    when the method (rightly) raised MethodError."""
    x = arch.x if x is None else x
    outcome = expected_outcome(arch.name, method)
    params = fast_params(method, x.shape[-1])
    try:
        result = cnnvis.explain(arch.model, x, method, target=target, **params)
    except cnnvis.MethodError:
        assert outcome != "run", f"{method} must run on {arch.name}"
        return None
    assert outcome != "MethodError", f"{method} must raise MethodError on {arch.name}"
    return result


def reference(arch: Arch, method: str):
    """The eval-mode result for the batch of 3, computed once per (architecture, method), with
    the model audited around that call."""
    if method not in arch.cache:
        before = arch.snapshot()
        arch.cache[method] = run(arch, method)
        arch.assert_unchanged(before)
    return arch.cache[method]


def maps(result) -> list[torch.Tensor]:
    if result is None:
        return []
    return [result.map] + ([] if result.layer_map is None else [result.layer_map])


def assert_same(a, b, exact: bool = True) -> None:
    assert (a is None) == (b is None), "one call raised MethodError and the other did not"
    for ma, mb in zip(maps(a), maps(b), strict=True):
        if exact:
            assert torch.equal(ma, mb)
        else:  # atol 1e-5 for maps of order 1, scaled with the map (gradients are ~1e-3)
            scale = float(mb.abs().max())
            torch.testing.assert_close(ma, mb, rtol=0, atol=1e-5 * scale + 1e-30)


# ----------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("method", METHODS)
def test_map_is_finite_with_the_right_shape_and_model_untouched(arch, method):
    skip_costly(arch, method)
    n, c, h, w = arch.x.shape
    result = reference(arch, method)  # audited
    if result is None:
        return
    info = cnnvis.get_method(method)
    assert result.kind == info.kind
    if info.kind == "pixel":
        assert result.map.shape == (n, c, h, w)
    else:
        assert result.map.shape == (n, h, w)
        assert result.layer_map is not None and result.layer_map.dim() == 3
        assert result.layer_map.shape[0] == n
    for m in maps(result):
        assert m.dtype == torch.float32
        assert torch.isfinite(m).all()
    assert result.targets == TARGETS


@pytest.mark.parametrize("method", METHODS)
def test_train_mode_is_restored_and_gives_the_eval_result(arch, method):
    skip_costly(arch, method)
    expected = reference(arch, method)
    model = arch.model
    try:
        model.train()
        next(model.children()).eval()  # a mixed state, restored module by module
        before = arch.snapshot()
        result = run(arch, method)
        arch.assert_unchanged(before)
    finally:
        model.eval()
    assert_same(result, expected)


@pytest.mark.parametrize("method", METHODS)
def test_works_under_no_grad_and_inference_mode(arch, method):
    skip_costly(arch, method)
    expected = reference(arch, method)
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            before = arch.snapshot()
            result = run(arch, method)
            arch.assert_unchanged(before)
            assert not torch.is_grad_enabled()
        assert_same(result, expected)


def float64_twin(arch: Arch) -> Arch:
    """A float64 copy of the architecture (built once), for comparisons that float32 cannot
    make: a ReLU whose input is within rounding of 0 flips between batch-of-3 and batch-of-1
    convolution kernels, and the gradient changes locally (plain torch.autograd on VGG11 at
    64x64: 2.6e-5 against a map maximum of 1.3e-3 for one image)."""
    if "float64" not in arch.cache:
        model = copy.deepcopy(arch.model).double()
        x = arch.x.double()
        arch.cache["float64"] = Arch(arch.name, model, x, model_tensors(model), arch.hook_layer)
    return arch.cache["float64"]


@pytest.mark.parametrize("method", METHODS)
def test_batch_equals_single_images(arch, method):
    """In eval mode each image's map depends on that image alone: a batch of 3 equals 3 single
    calls to atol 1e-5 x max |map|, in float64 (see `float64_twin`)."""
    skip_costly(arch, method)
    twin = float64_twin(arch)
    batch = reference(twin, method)
    for i, target in enumerate(TARGETS):
        single = run(twin, method, twin.x[i : i + 1], target=target)
        assert (single is None) == (batch is None)
        if batch is not None:
            # CAM maps are upsampled in float32 by the API; the layer maps keep float64
            assert maps(single)[-1].dtype == torch.float64
            assert_same(batch[i], single, exact=False)


@pytest.mark.parametrize("method", METHODS)
def test_deterministic(arch, method):
    skip_costly(arch, method)
    assert_same(run(arch, method), reference(arch, method))


class RaisedOnPurpose(RuntimeError):
    pass


def _raise(module, args, output):
    raise RaisedOnPurpose("a forward hook installed by the test raised")


@pytest.mark.parametrize("method", METHODS)
def test_failures_leave_no_hook_and_restore_the_model(arch, method):
    """Target out of range, a target list of the wrong length, an unknown layer, and a module
    whose forward raises mid-way: each error propagates, typed, and the model (in train mode,
    to check that `training` is restored) is exactly as before. Cheap for every method: each
    failure happens before the method's own passes."""
    model, x = arch.model, arch.x
    info = cnnvis.get_method(method)
    layer_methods = [method] if info.needs_layer else [method, "grad-cam"]
    kw = fast_params(method, x.shape[-1])
    params = {method: kw}
    try:
        model.train()
        pristine = arch.snapshot()
        failures: list[tuple[type[Exception], Callable[[], Any]]] = [
            (cnnvis.TargetError, lambda: cnnvis.explain(model, x, method, target=10**6, **kw)),
            (cnnvis.TargetError, lambda: cnnvis.explain(model, x, method, target=[1, 2], **kw)),
            (
                cnnvis.TargetError,
                lambda: cnnvis.explain(model, x, method, target=[1, 2, 3, 4], **kw),
            ),
            (
                cnnvis.LayerError,
                lambda: cnnvis.explain_many(
                    model, x, layer_methods, ["no.such.layer"], params=params
                ),
            ),
        ]
        for error, call in failures:
            with pytest.raises(error):
                call()
            arch.assert_unchanged(pristine)

        handle = dict(model.named_modules())[arch.hook_layer].register_forward_hook(_raise)
        try:
            with_hook = arch.snapshot()
            with pytest.raises(RaisedOnPurpose):
                cnnvis.explain(model, x, method, target=TARGETS, **kw)
            arch.assert_unchanged(with_hook)
        finally:
            handle.remove()
        arch.assert_unchanged(pristine)
    finally:
        model.eval()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(not m._backward_hooks and not m._backward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("method", METHODS)
def test_inplace_reused_relu_equals_its_out_of_place_twin(method):
    """One in-place ReLU module used twice gives the same maps as two out-of-place ReLUs, at an
    explicit layer (conv2, whose output the in-place ReLU overwrites) and at the default one."""
    model = seeded(InplaceReusedNet()).eval()
    twin = InplaceReusedNet(twin=True).eval()
    twin.load_state_dict(model.state_dict())
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    layers = ("conv2", None) if cnnvis.get_method(method).needs_layer else (None,)
    kw = fast_params(method, x.shape[-1])
    for layer in layers:
        outcomes = []
        for net in (model, twin):
            try:
                outcomes.append(cnnvis.explain(net, x, method, layer=layer, target=TARGETS, **kw))
            except cnnvis.MethodError:  # e.g. cam at conv2, which feeds a ReLU, not the GAP
                assert layer is not None or expected_outcome("inplace_reused", method) != "run"
                outcomes.append(None)
        assert_same(*outcomes, exact=False)
    assert cnnvis.default_layer(model, (1, 3, 32, 32)) == "relu"
    assert cnnvis.default_layer(twin, (1, 3, 32, 32)) == "relu2"


def test_the_audit_catches_changes():
    """The audit itself: each kind of change it is meant to catch is reported."""
    model = seeded(TinyNet())
    _prepare(model)
    x = torch.randn(1, 3, 8, 8)
    mutations: list[Callable[[], Any]] = [
        lambda: model.bn.train(),
        lambda: model.conv2.register_forward_hook(lambda *a: None),
        lambda: model.conv2.register_full_backward_hook(lambda *a: None),
        lambda: model.relu1.register_forward_pre_hook(lambda *a: None),
        lambda: setattr(model.relu2, "inplace", True),
        lambda: model.fc.bias.grad.add_(1.0),
        lambda: setattr(model.fc.weight, "grad", torch.zeros_like(model.fc.weight)),
        lambda: model.conv2.weight.requires_grad_(False),
        lambda: model.bn.running_mean.add_(1.0),
        lambda: setattr(model, "relu1", nn.ReLU()),
        lambda: x.add_(0.0),
        lambda: model.fc.weight.register_hook(lambda g: g),
    ]
    for i, mutate in enumerate(mutations):
        model = seeded(TinyNet())
        _prepare(model)
        x = torch.randn(1, 3, 8, 8)
        before = snapshot(model, x)
        assert not differences(before, model, x)
        mutate()
        assert differences(before, model, x), f"mutation {i} went unnoticed"
