"""cnnvis.features: activation maximization, channel grids and top-activating patches.

The default-model tests use the real EfficientNet-Lite0; everything else runs on the tiny
seeded CNN of conftest.py with a few steps on small images.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnvis
from cnnvis.errors import LayerError, TargetError
from cnnvis.features import (
    DEFAULT_STEPS,
    FeatureError,
    ImageParam,
    Robustness,
    channel_grid,
    make_grid,
    maximize,
    measure,
    parse_feature_target,
    receptive_field,
    top_patches,
    visualize,
)
from cnnvis.features.transform import NONE, random_affine
from cnnvis.images import list_samples
from cnnvis.targets import UnitTarget

from conftest import TinyCNN

FAST = {"steps": 4, "size": 24, "progress": False}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread while these tests run (restored after). On the shared 2-core
    machine, torch's default 2 OpenMP threads spun against the other jobs: the default-budget
    test took 439 s with 2 threads and 36 s with 1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def default_model():
    return cnnvis.load_model()


def snapshot(model: nn.Module) -> dict:
    """What must not change: training flags, every hook dict, parameters and their .grad."""
    return {
        "training": [(n, m.training) for n, m in model.named_modules()],
        "hooks": [
            (n, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for n, m in model.named_modules()
        ],
        "grads": [(n, p.grad is None, p.requires_grad) for n, p in model.named_parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["training"] == before["training"]
    assert after["hooks"] == before["hooks"]
    assert after["grads"] == before["grads"]
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key


# ----------------------------------------------------------------------------- the evidence


def test_default_budget_raises_a_channel_and_a_class_logit_10x(default_model):
    """On the default model with the default budget (DEFAULT_STEPS at 224 px), a mid-layer
    channel (blocks.3:13, mean 4.5 on a grey image) and the goldfish logit (-0.02 on grey, so
    it is held to 10x a floor of 1.0, and its probability to 10x grey's) end at least 10x
    above their value on a plain grey image."""
    grey = torch.full((1, 3, 224, 224), 0.5)
    for target in ("blocks.3:13", "class:1"):
        result = maximize(default_model, target, seed=0, progress=False)
        assert result.steps == DEFAULT_STEPS and result.size == 224
        before = measure(default_model, target, grey)
        after = measure(default_model, target, result.images)
        assert torch.allclose(before, result.grey_scores) and torch.allclose(after, result.scores)
        assert float(after) >= 10 * max(float(before), 1.0), (target, before, after)
    with torch.no_grad():
        x = default_model.preprocess.normalize(torch.cat([grey, result.images]))
        p_grey, p_after = default_model(x).softmax(dim=1)[:, 1].tolist()
    assert p_after >= 10 * p_grey and p_after > 0.5, (p_grey, p_after)


def test_top_patches_on_samples_are_sorted_and_the_right_size(default_model):
    samples = list_samples()
    sources = [f"sample:{name}" for name in ("cat", "coffee", "astronaut", "rocket", "horse")]
    sources = [s for s in sources if s.split(":")[1] in samples]
    found = top_patches(default_model, "blocks.3", 13, sources, k=3, batch_size=2)
    field = found.receptive_field
    assert field.grid == (14, 14) and field.stride == (16.0, 16.0) and field.size == 147
    assert found.patches.shape == (3, 3, 147, 147)
    assert found.images_seen == len(sources)
    assert (found.activations[:-1] >= found.activations[1:]).all()
    # the activations are the channel's maxima on those images, strongest first
    pictures = torch.stack(
        [default_model.preprocess.to_display(cnnvis.load_image(s)) for s in sources]
    )
    maxima = measure(default_model, "blocks.3:13@max", pictures)
    assert torch.allclose(found.activations, maxima.sort(descending=True).values[:3])
    for (top, left, bottom, right), (y, x) in zip(found.boxes, found.positions, strict=True):
        assert bottom - top == right - left == 147
        assert abs((top + bottom - 1) / 2 - (field.offset[0] + 16 * y)) <= 0.5
        assert abs((left + right - 1) / 2 - (field.offset[1] + 16 * x)) <= 0.5
    assert make_grid(found.patches, ncols=3).shape == (3, 147, 3 * 147 + 4)


# ----------------------------------------------------------------------------- optimization


def test_same_seed_same_image_other_seed_other_image():
    model = TinyCNN().eval()
    a = visualize(model, 2, seed=7, **FAST)
    b = visualize(model, 2, seed=7, **FAST)
    c = visualize(model, 2, seed=8, **FAST)
    assert a.shape == (3, 24, 24) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_unit_targets_rise_and_neurons_are_read_at_their_position():
    model = TinyCNN().eval()
    result = maximize(model, ["conv2:3", "conv2:5@2,3"], steps=30, size=16, progress=False)
    assert (result.scores > result.grey_scores).all()
    assert result.history.shape == (30, 2)
    act = {}
    handle = model.conv2.register_forward_hook(lambda m, a, out: act.update(out=out))
    try:
        with torch.no_grad():
            model(cnnvis.LoadedModel(model).preprocess.normalize(result.images))
    finally:
        handle.remove()
    assert torch.allclose(result.scores[0], act["out"][0, 3].mean())
    assert torch.allclose(result.scores[1], act["out"][1, 5, 2, 3])


def test_progress_bar_when_asked(capsys):
    visualize(TinyCNN().eval(), 1, steps=3, size=16, progress=True)
    assert "/3 [" in capsys.readouterr().err  # a tqdm bar over the 3 steps, on stderr


def test_channel_grid_optimizes_one_image_per_channel_in_one_batch():
    model = TinyCNN().eval()
    calls = []
    handle = model.conv1.register_forward_pre_hook(lambda m, args: calls.append(len(args[0])))
    try:
        result = channel_grid(model, "relu2", n=4, steps=20, size=16, progress=False)
    finally:
        handle.remove()
    assert result.images.shape == (4, 3, 16, 16)
    assert result.labels == [f"relu2:{c}" for c in range(4)]
    assert set(calls) == {4}  # every forward carried all four images
    picked = channel_grid(model, "relu2", channels=[6, 1], **FAST)
    assert [t.channel for t in picked.targets] == [6, 1]


def test_the_model_is_left_as_it_was_and_parameters_get_no_grad():
    model = TinyCNN().train()
    model.conv2.eval()  # a mixed state must come back exactly
    before = snapshot(model)
    maximize(model, ["class:1", 3], **FAST)
    maximize(model, "conv2:1", **FAST)
    top_patches(model, "conv2", 0, torch.rand(3, 3, 16, 16), k=2)
    assert_unchanged(model, before)


def test_hooks_removed_and_flags_restored_on_errors():
    model = TinyCNN().train()
    before = snapshot(model)
    with pytest.raises(TargetError):
        maximize(model, "conv2:99", **FAST)  # no such channel
    with pytest.raises(TargetError):
        maximize(model, 12, **FAST)  # the model has 5 classes
    with pytest.raises(LayerError):
        maximize(model, "nope:1", **FAST)
    assert_unchanged(model, before)

    def explode(module, args, output):
        explode.calls += 1
        if explode.calls == 3:
            raise RuntimeError("boom")

    explode.calls = 0
    handle = model.relu1.register_forward_hook(explode)
    try:
        before = snapshot(model)
        with pytest.raises(RuntimeError, match="boom"):
            maximize(model, "conv2:1", **FAST)  # fails in the middle of the optimization
        assert_unchanged(model, before)
    finally:
        handle.remove()


def test_targets_are_parsed_like_the_rest_of_cnnvis():
    assert parse_feature_target("class:1") == 1
    assert parse_feature_target("class:goldfish") == "goldfish"
    assert parse_feature_target("967") == 967
    assert parse_feature_target("espresso") == "espresso"
    assert parse_feature_target("blocks.3:5") == UnitTarget("blocks.3", 5)
    assert parse_feature_target("blocks.3:5@4,2") == UnitTarget("blocks.3", 5, "point", (4, 2))
    with pytest.raises(TargetError):
        parse_feature_target("top1")
    with pytest.raises(TargetError):
        maximize(TinyCNN().eval(), ["conv2:1", 2], **FAST)  # a layer and the logits at once
    with pytest.raises(FeatureError):
        maximize(TinyCNN().eval(), 1, steps=-1, size=24)


def test_class_names_resolve_on_the_default_model(default_model):
    result = maximize(
        default_model, ["goldfish", "class:espresso"], steps=1, size=32, progress=False
    )
    assert result.targets == [1, 967]
    assert result.labels == ["goldfish (1)", "espresso (967)"]


# ----------------------------------------------------------------------------- pieces


def test_image_param_starts_grey_and_keeps_to_the_unit_range():
    gen = torch.Generator().manual_seed(0)
    for fourier in (True, False):
        param = ImageParam(2, 32, gen, fourier=fourier)
        image = param()
        assert image.shape == (2, 3, 32, 32)
        assert (image - 0.5).abs().max() < 0.05
        with torch.no_grad():
            param.tensor.mul_(1e4)
        big = param()
        assert big.min() >= 0 and big.max() <= 1


def test_random_affine_is_seeded_and_fills_with_grey():
    x = torch.rand(3, 3, 20, 20)
    a = random_affine(x, Robustness(), torch.Generator().manual_seed(1))
    b = random_affine(x, Robustness(), torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape
    assert random_affine(x, NONE, torch.Generator()) is x
    zoom_out = Robustness(jitter=0, scale=(0.5, 0.5), degrees=0)
    small = random_affine(torch.zeros(1, 3, 20, 20), zoom_out, torch.Generator())
    assert torch.allclose(small[..., 0, 0], torch.tensor(0.5))  # a grey frame
    assert torch.allclose(small[..., 10, 10], torch.tensor(0.0))


def test_receptive_field_of_a_known_stack():
    """TinyCNN: 3x3 conv (pad 1) then 3x3 stride-2 conv (pad 1): 5 px, stride 2, unit y at 2y."""
    field = receptive_field(TinyCNN().eval(), "conv2", input_size=16)
    assert field.grid == (8, 8) and field.stride == (2.0, 2.0)
    assert field.size == 5 and field.offset == (0.0, 0.0)
    assert field.box(3, 4) == (4, 6, 9, 11)


def test_top_patches_pad_with_grey_at_the_border():
    model = TinyCNN().eval()
    images = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    found = top_patches(model, "conv2", 2, images, k=10, patch_size=7)
    assert found.patches.shape == (5, 3, 7, 7) and len(found) == 5
    assert (found.activations[:-1] >= found.activations[1:]).all()
    with pytest.raises(TargetError):
        top_patches(model, "conv2", 99, images)


# ----------------------------------------------------------------------------- command line


def run_cli(argv: list[str]) -> int:
    from cnnvis.cli import features as features_command
    from cnnvis.cli.main import build_parser

    args = build_parser().parse_args(["features", *argv])
    assert args.run is features_command.run
    return args.run(args)


def test_cli_target_grid_and_top_patches(tmp_path, capsys):
    fast = ["--steps", "2", "--size", "32", "--out", str(tmp_path), "-q"]
    assert run_cli(["--target", "goldfish", "--target", "blocks.3:1", *fast]) == 0
    assert (tmp_path / "goldfish_1.png").is_file()
    assert (tmp_path / "blocks.3_1.png").is_file()
    assert run_cli(["--layer", "blocks.2", "--channels", "0-2", *fast]) == 0
    assert (tmp_path / "blocks.2-channels.png").is_file()
    assert (tmp_path / "blocks.2" / "channel-0002.png").is_file()
    assert (tmp_path / "blocks.2-figure.png").is_file()
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("cat", "coffee", "rocket"):
        cnnvis.load_image(f"sample:{name}").save(folder / f"{name}.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    argv = ["--top-patches", str(folder), "--layer", "blocks.2", "--channel", "3", "--k", "2"]
    assert run_cli([*argv, "--out", str(tmp_path), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"mode": "top-patches"' in out and "broken.jpg" not in out
    assert (tmp_path / "blocks.2-channel-0003-top2.png").is_file()


def test_cli_refuses_flags_that_do_not_fit_together(tmp_path):
    with pytest.raises(FeatureError, match="say what to show"):
        run_cli(["--out", str(tmp_path)])
    with pytest.raises(FeatureError):
        run_cli(["--top-patches", str(tmp_path), "--layer", "blocks.2", "--out", str(tmp_path)])
    with pytest.raises(FeatureError):
        run_cli(["--layer", "blocks.2", "--channels", "x", "--out", str(tmp_path)])
