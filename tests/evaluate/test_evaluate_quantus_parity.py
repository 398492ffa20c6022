"""Agreement with Quantus (the metrics reference) on identical inputs and maps: cnnvis' deletion
curve is Quantus' pixel flipping (Bach et al. 2015) with the same baseline, order and step; the
pointing games are its pointing game and attribution localisation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from cnnvis.evaluate import deletion_insertion
from cnnvis.model import as_loaded

from conftest import TinyCNN

quantus = pytest.importorskip("quantus")

# Quantus checks that its step divides H x W but steps through C x H x W values (the map is
# broadcast over the channels): with 144 pixels and 6 steps, a step is 72 values, 24 whole
# pixels, and 72 divides 144
SIDE, STEPS = 12, 6


@pytest.fixture(scope="module")
def case():
    """A tiny classifier, one input, its top class, and a map without ties (so that both
    libraries remove the pixels in exactly one order)."""
    model = TinyCNN().eval()
    x = torch.randn(1, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(11))
    target = int(model(x).argmax())
    relevance = torch.rand(SIDE, SIDE, generator=torch.Generator().manual_seed(12))
    return model, x, target, relevance


def test_deletion_is_quantus_pixel_flipping(case):
    model, x, target, relevance = case
    ours = deletion_insertion(
        as_loaded(model), x, relevance, target, steps=STEPS, metrics=("deletion",)
    )["deletion"]
    metric = quantus.PixelFlipping(
        features_in_step=3 * SIDE * SIDE // STEPS,  # a pixel is its 3 channels in Quantus
        perturb_baseline=0.0,  # cnnvis' "mean" substrate: 0 in the normalized input
        disable_warnings=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        [curve] = metric(
            model=model,
            x_batch=x.numpy(),
            y_batch=np.array([target]),
            a_batch=relevance[None, None].numpy(),
            device="cpu",
            softmax=True,
        )
    theirs = np.asarray(curve, dtype=np.float64)
    # Quantus' curve starts after the first step; cnnvis' at the unperturbed image
    assert theirs.shape == (STEPS,)
    np.testing.assert_allclose(ours.scores[1:].numpy(), theirs, rtol=1e-5, atol=1e-7)
    # Quantus' AUC: trapezoids of width 1 from step 1; cnnvis': of width 1/STEPS from step 0
    p0, p1 = float(ours.scores[0]), float(ours.scores[1])
    quantus_auc = float(np.trapezoid(theirs, dx=1.0))
    assert ours.value * STEPS - (p0 + p1) / 2 == pytest.approx(quantus_auc, rel=1e-5)


def test_pointing_games_are_quantus_pointing_game_and_attribution_localisation(case):
    """Eight signed maps against boxes: the pointing game at tolerance 0 is Quantus'
    `PointingGame`; the energy-based game is its `AttributionLocalisation` on the positive
    part (`positive_attributions=True`, `abs=False`)."""
    from cnnvis.evaluate import box_mask, energy_pointing_game, pointing_game

    model, x, target, _ = case
    g = torch.Generator().manual_seed(13)
    maps = torch.randn(8, SIDE, SIDE, generator=g)
    corners = torch.randint(0, SIDE // 2, (8, 2), generator=g).tolist()
    masks = torch.stack(
        [box_mask((x0, y0, x0 + SIDE // 3, y0 + SIDE // 2), (SIDE, SIDE)) for x0, y0 in corners]
    )
    for k in range(8):  # the peak inside the box for even k, outside it for odd k
        where = torch.nonzero(masks[k] if k % 2 == 0 else ~masks[k])[k]
        maps[k, where[0], where[1]] = 5.0
    hits = [pointing_game(m, s, tolerance=0) for m, s in zip(maps, masks, strict=True)]
    shares = [energy_pointing_game(m, s) for m, s in zip(maps, masks, strict=True)]
    call = {
        "model": model,
        "x_batch": x.expand(8, -1, -1, -1).numpy(),
        "y_batch": np.full(8, target),
        "a_batch": maps[:, None].numpy(),
        "s_batch": masks[:, None].numpy().astype(np.float32),
        "device": "cpu",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        their_hits = quantus.PointingGame(disable_warnings=True)(**call)
        their_shares = quantus.AttributionLocalisation(
            positive_attributions=True, abs=False, disable_warnings=True
        )(**call)
    assert hits == [1.0, 0.0] * 4
    assert hits == [float(h) for h in their_hits]
    np.testing.assert_allclose(shares, their_shares, rtol=1e-5)
