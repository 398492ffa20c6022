"""Deletion / insertion, Average Drop / Increase and ROAD on models with analytic scores."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from cnnvis.evaluate import (
    EvaluationError,
    auc,
    deletion_insertion,
    linear_imputation,
    noisy_linear_imputation,
    substrate,
)
from cnnvis.evaluate.faithfulness import (
    Anchors,
    anchor_plan,
    average_drop_plan,
    execute,
    road_plan,
)
from cnnvis.evaluate.maps import order_values, ranks, relevance, unit_weights
from cnnvis.evaluate.scoring import Scorer, stacked
from cnnvis.model import LoadedModel, Preprocess

from conftest import TinyCNN

IDENTITY = Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


class MeanPixel(nn.Module):
    """p(class 0) = m, the mean pixel value in [0, 1]: logits (log m, log(1 - m)), float64.
    Counts the rows and calls it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.rows, self.calls = 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        self.calls += 1
        m = x.double().mean(dim=(1, 2, 3))
        return torch.stack([torch.log(m), torch.log1p(-m)], dim=1)


def mean_model() -> LoadedModel:
    return LoadedModel(MeanPixel(), "mean-pixel", preprocess=IDENTITY)


def half_bright() -> torch.Tensor:
    """(3, 4, 4): the left two columns 0.9, the right two 0.1 (mean 0.5)."""
    x = torch.full((3, 4, 4), 0.1, dtype=torch.float64)
    x[:, :, :2] = 0.9
    return x


def test_deletion_and_insertion_match_hand_computed_curves():
    lm, x = mean_model(), half_bright()
    curves = deletion_insertion(
        lm, x, x[0], 0, steps=4, substrate_spec="mean", insertion_substrate=0.0, batch_size=3
    )
    # deleting 4 bright pixels per step from 8 x 0.9 + 8 x 0.1 (out of 16)
    expected_del = torch.tensor([0.5, 4.4 / 16, 0.8 / 16, 0.4 / 16, 0.0], dtype=torch.float64)
    expected_ins = torch.tensor([0.0, 3.6 / 16, 7.2 / 16, 7.6 / 16, 0.5], dtype=torch.float64)
    assert torch.allclose(curves["deletion"].scores, expected_del, atol=1e-12)
    assert torch.allclose(curves["insertion"].scores, expected_ins, atol=1e-12)
    assert curves["deletion"].value == pytest.approx(0.15, abs=1e-12)  # trapezoid
    assert curves["insertion"].value == pytest.approx(0.35, abs=1e-12)
    assert curves["deletion"].fractions.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_the_reversed_order_deletes_the_dark_half_first():
    lm, x = mean_model(), half_bright()
    curves = deletion_insertion(lm, x, -x[0], 0, steps=4, metrics=("deletion",))
    assert curves["deletion"].value == pytest.approx(
        0.25 * (0.25 + 0.475 + 0.45 + 0.225), abs=1e-12
    )
    assert "insertion" not in curves


def test_a_uniform_image_gives_a_straight_line_whatever_the_map():
    lm = mean_model()
    x = torch.full((3, 5, 5), 0.8, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        curve = deletion_insertion(lm, x, torch.rand(5, 5, generator=g), 0, steps=5)["deletion"]
        assert curve.value == pytest.approx(0.4, abs=1e-12)  # 0.8 (1 - f), exact by trapezoid


def test_forward_count_shares_the_end_points_and_fills_batches():
    lm = mean_model()
    x = torch.rand(3, 10, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    deletion_insertion(lm, x, x[0], 0, steps=100, batch_size=32)
    # 3 anchors (image, deleted, blurred) + 2 x 99 inner points, together in batches of 32
    assert lm.module.rows == 3 + 2 * 99
    assert lm.module.calls == -(-201 // 32)


def test_curves_do_not_depend_on_the_batch_size():
    lm = mean_model()
    g = torch.Generator().manual_seed(2)
    x, m = torch.rand(3, 9, 9, dtype=torch.float64, generator=g), torch.rand(9, 9, generator=g)
    a = deletion_insertion(lm, x, m, 0, steps=7, batch_size=1)
    b = deletion_insertion(lm, x, m, 0, steps=7, batch_size=64)
    for metric in ("deletion", "insertion"):
        assert torch.equal(a[metric].scores, b[metric].scores)


def test_auc_is_the_trapezoid_rule():
    f = torch.tensor([0.0, 0.5, 1.0])
    assert auc(torch.tensor([1.0, 1.0, 0.0]), f) == pytest.approx(0.75)


def test_substrates():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    pre = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert torch.equal(substrate(x, "mean", pre), torch.zeros_like(x))
    assert torch.allclose(substrate(x, "black", pre), torch.full_like(x, -1.0))
    assert substrate(x, "blur", pre).shape == x.shape
    assert torch.equal(substrate(x, 0.25, pre), torch.full_like(x, 0.25))
    with pytest.raises(EvaluationError, match="unknown substrate"):
        substrate(x, "grey", pre)


def _drop(x: torch.Tensor, weights: torch.Tensor, fill: float) -> dict[str, float]:
    lm = mean_model()
    scorer = Scorer(lm, batch_size=4)
    deleted = substrate(x[None], fill, lm.preprocess)[0]
    anchors = Anchors()
    first = anchor_plan(x, deleted, deleted, 0, anchors)
    plan = average_drop_plan(x, weights, 0, anchors, deleted=deleted)
    return execute(scorer, [first, plan])[1]


def test_average_drop_and_increase():
    x = torch.full((3, 4, 4), 0.5, dtype=torch.float64)
    w = torch.zeros(4, 4, dtype=torch.float64)
    w[:, :2] = 1.0
    found = _drop(x, w, 0.0)  # O = mean(0.5 w) = 0.25, Y = 0.5
    assert found["average-drop"] == pytest.approx(0.5)
    assert found["increase"] == 0.0
    found = _drop(x, w, 1.0)  # blending towards 1 raises the score: O = 0.75 > Y
    assert found["average-drop"] == 0.0
    assert found["increase"] == 1.0


def test_map_views():
    pixel = torch.tensor([[[[1.0, -2.0]], [[-3.0, 0.5]], [[0.0, 0.0]]]])  # (1, 3, 1, 2)
    assert relevance(pixel).tolist() == [[[4.0, 2.5]]]
    assert order_values(pixel).tolist() == [[[4.0, 2.5]]]
    cam = torch.tensor([[[0.5, -1.0]]])
    assert relevance(cam).tolist() == [[[0.5, 0.0]]]
    assert order_values(cam).tolist() == [[[0.5, -1.0]]]
    assert unit_weights(torch.tensor([[2.0, 4.0]])).tolist() == [[0.0, 1.0]]
    assert unit_weights(torch.zeros(2, 2)).tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_ties_are_broken_by_a_seeded_permutation_not_by_position():
    flat = torch.zeros(8, 8)
    flat[0, 0] = 1.0
    a = ranks(flat, torch.Generator().manual_seed(0))
    b = ranks(flat, torch.Generator().manual_seed(0))
    c = ranks(flat, torch.Generator().manual_seed(1))
    assert a[0] == 0 and torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[1:], torch.arange(1, 64))  # not row-major
    assert sorted(a.tolist()) == list(range(64))


# ----------------------------------------------------------------------------- ROAD


def _direct_solution(x: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """The ROAD neighbour equations solved exactly with SciPy's sparse solver."""
    import numpy as np
    from scipy.sparse import lil_matrix
    from scipy.sparse.linalg import spsolve

    c, h, w = x.shape
    ys, xs = np.nonzero(removed.numpy())
    index = -np.ones((h, w), dtype=int)
    index[ys, xs] = np.arange(len(ys))
    a, b = lil_matrix((len(ys), len(ys))), np.zeros((len(ys), c))
    img = x.numpy()
    for k, (y, x0) in enumerate(zip(ys, xs, strict=True)):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                yy, xx = y + dy, x0 + dx
                if (dy, dx) == (0, 0) or not (0 <= yy < h and 0 <= xx < w):
                    continue
                weight = 1 / 6 if dy == 0 or dx == 0 else 1 / 12
                a[k, k] += weight
                if removed[yy, xx]:
                    a[k, index[yy, xx]] -= weight
                else:
                    b[k] += weight * img[:, yy, xx]
    out = img.copy()
    out[:, ys, xs] = spsolve(a.tocsc(), b).T
    return torch.from_numpy(out)


def test_linear_imputation_solves_the_road_equations():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(3, 24, 24, dtype=torch.float64, generator=g)
    removed = torch.rand(24, 24, generator=g) < 0.6
    exact = _direct_solution(x, removed)
    solved = linear_imputation(x[None], removed[None, None], iterations=300, tol=1e-12)[0]
    assert torch.allclose(solved, exact, atol=1e-10)
    rough = linear_imputation(x[None], removed[None, None])[0]  # the default iterations
    assert (rough - exact).abs().max() < 1e-3
    assert torch.equal(solved[:, ~removed], x[:, ~removed])  # kept pixels untouched


def test_imputation_keeps_constant_and_linear_images():
    constant = torch.full((1, 3, 32, 32), 0.3, dtype=torch.float64)
    removed = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    removed[..., 5:27, 5:27] = True
    assert torch.allclose(linear_imputation(constant, removed, tol=1e-12), constant)
    ramp = torch.linspace(0, 1, 32, dtype=torch.float64).expand(1, 3, 32, 32).clone()
    assert torch.allclose(linear_imputation(ramp, removed, tol=1e-12), ramp, atol=1e-10)


def test_noise_only_on_imputed_pixels_and_seeded():
    x = torch.zeros(1, 3, 20, 20)
    removed = torch.zeros(1, 1, 20, 20, dtype=torch.bool)
    removed[..., :10] = True
    a = noisy_linear_imputation(x, removed, noise=0.1, generator=torch.Generator().manual_seed(0))
    b = noisy_linear_imputation(x, removed, noise=0.1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert (a[..., 10:] == 0).all() and a[..., :10].std() == pytest.approx(0.1, rel=0.2)


def test_road_leaks_nothing_on_a_uniform_image_and_ignores_batch_size():
    x = torch.full((3, 12, 12), 0.6, dtype=torch.float64)
    rank = ranks(torch.rand(12, 12, generator=torch.Generator().manual_seed(5)))
    for batch in (1, 32):
        scorer = Scorer(mean_model(), batch_size=batch)
        plan = road_plan("i", "m", x, rank, 0, fractions=(0.2, 0.5, 0.8), noise=0.0)
        found = execute(scorer, [plan])[0]
        for metric in ("road-morf", "road-lerf"):
            assert torch.allclose(found[metric].scores, torch.full((3,), 0.6, dtype=torch.float64))
    g = torch.Generator().manual_seed(6)
    noisy = torch.rand(3, 12, 12, dtype=torch.float64, generator=g)
    runs = []
    for batch in (1, 4):
        plan = road_plan("i", "m", noisy, rank, 0, fractions=(0.2, 0.5, 0.8), noise=0.05, seed=9)
        runs.append(execute(Scorer(mean_model(), batch_size=batch), [plan])[0])
    assert torch.equal(runs[0]["road-morf"].scores, runs[1]["road-morf"].scores)


def test_scorer_fills_batches_across_jobs():
    lm = mean_model()
    scorer = Scorer(lm, batch_size=4)
    rows = torch.rand(5, 3, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    out = scorer.run([stacked(rows[:3], 0), stacked(rows[3:], 1)])
    means = rows.mean(dim=(1, 2, 3))
    assert torch.allclose(out[0], means[:3]) and torch.allclose(out[1], 1 - means[3:])
    assert lm.module.calls == 2 and scorer.forwards == 5


def _reference_deletion_insertion(
    model: nn.Module, x: torch.Tensor, order: torch.Tensor, target: int, steps: int
) -> dict[str, torch.Tensor]:
    """The RISE curves written out: for step k, the first round(k H W / steps) pixels of
    `order` replaced (deletion: by 0; insertion: the image put onto its blur), one image at a
    time, p(target) by softmax."""
    from torchvision.transforms.v2 import functional as TF

    c, h, w = x.shape
    flat = x.reshape(c, -1)
    blurred = TF.gaussian_blur(x[None], [11, 11], [5.0, 5.0])[0].reshape(c, -1)
    curves: dict[str, list[float]] = {"deletion": [], "insertion": []}
    for k in range(steps + 1):
        chosen = order[: round(k * h * w / steps)]
        deleted, inserted = flat.clone(), blurred.clone()
        deleted[:, chosen] = 0.0
        inserted[:, chosen] = flat[:, chosen]
        for metric, row in (("deletion", deleted), ("insertion", inserted)):
            with torch.no_grad():
                p = model(row.reshape(1, c, h, w)).softmax(dim=1)[0, target]
            curves[metric].append(float(p))
    return {m: torch.tensor(v, dtype=torch.float64) for m, v in curves.items()}


def test_deletion_insertion_equal_a_straightforward_reference_loop():
    """A real CNN (TinyCNN in float64), a map without ties, the default substrates (dataset
    mean = 0, blur kernel 11 sigma 5): the batched, mask-by-rank curves equal the loop's."""
    model = TinyCNN().double().eval()
    g = torch.Generator().manual_seed(8)
    x = torch.randn(3, 24, 24, dtype=torch.float64, generator=g)
    saliency = torch.randperm(24 * 24, generator=g).float().view(24, 24)
    order = torch.argsort(saliency.flatten(), descending=True)
    target = int(model(x[None]).argmax())
    lm = LoadedModel(model, "tiny")
    ours = deletion_insertion(lm, x, saliency, target, steps=10, batch_size=7)
    ref = _reference_deletion_insertion(model, x, order, target, steps=10)
    for metric in ("deletion", "insertion"):
        assert torch.allclose(ours[metric].scores, ref[metric], rtol=0, atol=1e-12), metric
        expected = sum(0.1 * (a + b) / 2 for a, b in itertools.pairwise(ref[metric].tolist()))
        assert ours[metric].value == pytest.approx(expected, abs=1e-12)
    assert not torch.allclose(ref["deletion"], ref["insertion"])  # the two differ: not vacuous
