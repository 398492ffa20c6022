"""Deep Feature Factorization: agreement with pytorch-grad-cam, textures it must separate, the
model left as it was, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam import DeepFeatureFactorization
from pytorch_grad_cam.feature_factorization.deep_feature_factorization import dff as reference_dff
from scipy.optimize import linear_sum_assignment
from textures import normalize, texture_net, two_texture_scenes

from cnnvis.concepts import ConceptError, dff
from cnnvis.concepts.nmf import nmf, random_init
from cnnvis.errors import LayerError
from cnnvis.render.figures import figure_png

from conftest import TinyCNN


def correlations(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """(k, k) Pearson r between the rows of a (k, ...) and of b (k, ...)."""
    a2, b2 = a.flatten(1).double().numpy(), b.flatten(1).double().numpy()
    k = len(a2)
    return np.corrcoef(a2, b2)[:k, k:]


def matched(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching of rows to columns by largest r: (rows, columns)."""
    return linear_sum_assignment(-r)


def layer_output(model: torch.nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    store: dict[str, torch.Tensor] = {}
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, i, o: store.setdefault("a", o.detach()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return store["a"].clone()


@pytest.mark.parametrize("n", [3, 8])
def test_agrees_with_pytorch_grad_cams_dff(n: int) -> None:
    model = TinyCNN().eval()
    x = torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(n))
    k = 3
    acts = layer_output(model, "relu2", x)
    # pytorch-grad-cam shifts each channel by its minimum, cnnvis clamps at 0: the same here
    assert float(acts.permute(1, 0, 2, 3).flatten(1).min(dim=1).values.abs().max()) == 0
    ours = dff(model, x, layer="relu2", k=k, seed=0)
    concepts, maps = reference_dff(acts.numpy().copy(), n_components=k)
    theirs = torch.from_numpy(maps).transpose(0, 1)  # (k, N, h, w)
    r = correlations(ours.layer_maps.transpose(0, 1), theirs)
    rows, cols = matched(r)
    assert r[rows, cols].min() >= 0.99, r
    r_basis = correlations(ours.basis, torch.from_numpy(concepts).T)
    assert r_basis[rows, cols].min() >= 0.99, r_basis
    # the head: the rest of the model on a basis vector is fc(basis) after global pooling
    assert ours.logits is not None
    torch.testing.assert_close(ours.logits, model.fc(ours.basis).detach(), rtol=1e-4, atol=1e-5)
    # pytorch-grad-cam's concepts, scaled as cnnvis scales them (each map's maximum 1), give
    # the same head outputs (NMF itself leaves each concept's scale between basis and map free)
    peak = torch.from_numpy(maps).amax(dim=(0, 2, 3))
    scaled = (torch.from_numpy(concepts) * peak).T.float()
    ref = DeepFeatureFactorization(model, model.relu2, computation_on_concepts=model.fc)
    _, _, outputs = ref(x, n_components=k)
    torch.testing.assert_close(
        model.fc(torch.from_numpy(concepts).T.float()).detach(), torch.from_numpy(outputs)
    )
    theirs_out = model.fc(scaled).detach()[cols]
    gap = (ours.logits[rows] - theirs_out).norm(dim=1) / theirs_out.norm(dim=1)
    assert gap.max() < 0.02, gap
    assert torch.equal(ours.logits[rows].argmax(dim=1), theirs_out.argmax(dim=1))
    assert float(ours.layer_maps.amax()) == pytest.approx(1)


def test_nmf_starts_where_scikit_learn_starts_and_recovers_a_low_rank_matrix() -> None:
    from sklearn.decomposition._nmf import _initialize_nmf

    g = torch.Generator().manual_seed(0)
    w_true, h_true = torch.rand(12, 3, generator=g), torch.rand(3, 40, generator=g)
    x = (w_true @ h_true).double()
    w0, h0 = random_init(x, 3, seed=7)
    sk_w0, sk_h0 = _initialize_nmf(x.numpy(), 3, init="random", random_state=7)
    np.testing.assert_allclose(w0.numpy(), sk_w0)
    np.testing.assert_allclose(h0.numpy(), sk_h0)
    factors = nmf(x, 3, seed=7, tol=0, max_iter=1000)
    assert factors.error < 1e-2
    assert (factors.w >= 0).all() and (factors.h >= 0).all()


def test_separates_two_textures_in_known_regions() -> None:
    """A tiny net trained to tell stripes (class 0) from dots (class 1); scenes with one part of
    each: each concept's map covers one texture's part, and votes for that texture's class."""
    net = texture_net()
    pictures, masks = two_texture_scenes(8)
    result = dff(net, normalize(pictures), layer="3", k=2, seed=0)
    strongest = result.maps.argmax(dim=1)  # (N, H, W)
    iou = np.zeros((2, 2))
    for concept in range(2):
        for texture in range(2):
            shown, truth = strongest == concept, masks[:, texture] > 0
            iou[concept, texture] = float((shown & truth).sum() / (shown | truth).sum())
    rows, cols = matched(iou)
    assert iou[rows, cols].min() > 0.8, iou  # chance is about 1/3
    for concept, texture in zip(rows, cols, strict=True):
        assert result.top_classes[concept][0].index == texture


def test_leaves_the_model_as_it_was() -> None:
    model = TinyCNN().train()
    before = {name: p.clone() for name, p in model.state_dict().items()}
    dff(model, torch.rand(2, 3, 16, 16), layer="relu2", k=2)
    assert all(m.training for m in model.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    for name, p in model.state_dict().items():
        assert torch.equal(p, before[name]), name


def test_result_shapes_repr_and_figure() -> None:
    model = TinyCNN().eval()
    result = dff(model, torch.rand(3, 3, 16, 16), layer="relu2", k=2)
    assert result.maps.shape == (3, 2, 16, 16)
    assert result.layer_maps.shape == (3, 2, 8, 8)
    assert result.basis.shape == (2, 8)
    assert len(result.top_classes) == 2 and len(result.top_classes[0]) == 3
    assert repr(result).startswith("ConceptResult(dff at 'relu2': 2 concepts over 3 image(s)")
    assert result.label(1).startswith("concept 1: class ")
    assert [c["concept"] for c in result.summary()] == [0, 1]
    assert sum(float(c["share"]) for c in result.summary()) == pytest.approx(1, abs=1e-3)
    assert figure_png(result.figure()).startswith(b"\x89PNG")


def test_a_layer_without_spatial_activations_is_refused_by_name() -> None:
    with pytest.raises(LayerError, match=r"'fc'.*spatial"):
        dff(TinyCNN().eval(), torch.rand(2, 3, 16, 16), layer="fc", k=2)


def test_too_few_positions_says_how_many_images_are_needed() -> None:
    model = TinyCNN().eval()
    with pytest.raises(ConceptError, match="pass at least 3 images"):
        dff(model, torch.rand(1, 3, 16, 16), layer="pool", k=3)  # 1x1 per image
    with pytest.raises(ConceptError, match="at most 8"):
        dff(model, torch.rand(2, 3, 16, 16), layer="relu2", k=9)  # 8 channels
    with pytest.raises(ConceptError, match="at least 1"):
        dff(model, torch.rand(2, 3, 16, 16), layer="relu2", k=0)


class SizeChecked(TinyCNN):
    """TinyCNN that refuses any input but 64x64 (as models with a fixed input size do)."""

    def forward(self, x):
        if x.shape[-1] != 64:
            raise ValueError(f"expected 64x64 input, got {tuple(x.shape)}")
        return super().forward(x)


def test_the_head_runs_at_full_size_when_the_model_refuses_a_small_blank() -> None:
    model = SizeChecked().eval()
    result = dff(model, torch.rand(2, 3, 64, 64), layer="relu2", k=2)
    assert result.logits is not None
    torch.testing.assert_close(result.logits, model.fc(result.basis).detach())


def test_an_explicit_head_is_used_as_given() -> None:
    model = TinyCNN().eval()
    result = dff(model, torch.rand(2, 3, 16, 16), layer="relu2", k=2, head=lambda b: -model.fc(b))
    assert result.logits is not None
    torch.testing.assert_close(result.logits, -model.fc(result.basis).detach())
