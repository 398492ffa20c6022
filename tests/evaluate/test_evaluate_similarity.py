"""Baselines and similarity measures: against SciPy / scikit-image and by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnvis.evaluate import (
    centre_gaussian,
    hog_similarity,
    smooth_random,
    sobel_edges,
    spearman,
    ssim,
)
from cnnvis.evaluate.similarity import average_ranks, similarities, unit_scale


def test_smooth_random_is_seeded_bounded_and_smooth():
    a = smooth_random((56, 56), 7, torch.Generator().manual_seed(0))
    b = smooth_random((56, 56), 7, torch.Generator().manual_seed(0))
    c = smooth_random((56, 56), 7, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (56, 56) and a.min() >= 0 and a.max() <= 1
    noise = torch.rand(56, 56, generator=torch.Generator().manual_seed(0))
    step = (a[:, 1:] - a[:, :-1]).abs().mean()
    assert step < 0.1 * (noise[:, 1:] - noise[:, :-1]).abs().mean()


def test_centre_gaussian_peaks_in_the_middle():
    g = centre_gaussian((9, 9))
    assert int(g.argmax()) == 4 * 9 + 4 and torch.allclose(g, g.flip(0)) and torch.allclose(g, g.T)
    even = centre_gaussian((224, 224))
    y, x = divmod(int(even.argmax()), 224)
    assert (y, x) == (111, 111)


def test_sobel_edges_find_a_step():
    image = torch.zeros(3, 16, 16)
    image[:, :, 8:] = 1.0
    edges = sobel_edges(image)
    assert edges[:, 7:9].min() > 0 and edges[:, :6].abs().max() == 0 and edges[:, 10:].max() == 0
    assert edges[5, 7] == pytest.approx(3 * 4.0)  # |Gx| = 4 per channel, 3 channels


def test_spearman_matches_scipy_with_ties():
    from scipy.stats import spearmanr

    g = torch.Generator().manual_seed(2)
    a = torch.randint(0, 5, (200,), generator=g).double()  # many ties
    b = a + torch.randn(200, generator=g, dtype=torch.float64)
    assert spearman(a, b) == pytest.approx(spearmanr(a.numpy(), b.numpy()).statistic, abs=1e-12)
    assert average_ranks(torch.tensor([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(torch.ones(5), a[:5]) == 0.0  # constant: no correlation, not NaN


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(3)
    a = torch.rand(40, 40, generator=g, dtype=torch.float64)
    b = (a + 0.2 * torch.rand(40, 40, generator=g, dtype=torch.float64)).clamp(0, 1)
    expected = structural_similarity(
        a.numpy(), b.numpy(), data_range=1.0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False,
    )  # fmt: skip
    assert ssim(a, b) == pytest.approx(expected, abs=1e-9)
    assert ssim(a, a) == pytest.approx(1.0)


def test_hog_similarity_and_the_bundle():
    g = torch.Generator().manual_seed(4)
    a = smooth_random((64, 64), 5, g)
    assert hog_similarity(a, a) == pytest.approx(1.0)
    assert hog_similarity(a, a.T) < 0.9
    found = similarities((a, a), (a, a))
    assert found == pytest.approx({"spearman-abs": 1.0, "spearman": 1.0, "ssim": 1.0, "hog": 1.0})
    assert set(similarities((a, a), (-a, a), ("spearman",))) == {"spearman"}
    assert similarities((a, a), (-a, a), ("spearman",))["spearman"] == pytest.approx(-1.0)


def test_unit_scale_clips_at_the_percentile():
    m = torch.arange(100, dtype=torch.float64).reshape(10, 10)
    scaled = unit_scale(m, 90)
    assert scaled.max() == 1.0 and scaled[0, 0] == 0.0
    assert float(scaled[5, 0]) == pytest.approx(50 / np.percentile(np.arange(100), 90))
    assert unit_scale(torch.zeros(3, 3)).sum() == 0
