"""Display post-processing: hand-computed values, zero-safety, per-sample independence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnvis import errors
from cnnvis.postprocess import (
    DisplayError,
    abs_max_grayscale,
    grayscale,
    is_blank,
    normalize,
    relu,
    rescale,
    symmetric,
    upsample,
)


def tiny() -> torch.Tensor:
    """One (1, 1, 2, 2) signed map: min -2, max 4."""
    return torch.tensor([[[[-2.0, 0.0], [1.0, 4.0]]]])


# normalize / is_blank


def test_normalize_hand_values():
    out = normalize(tiny())
    expected = torch.tensor([[[[0.0, 2 / 6], [3 / 6, 1.0]]]])
    torch.testing.assert_close(out, expected)


def test_all_zero_map_gives_zeros_not_nan_and_is_blank():
    zero = torch.zeros(2, 3, 4, 4)
    for out in (normalize(zero), rescale(zero, "all"), rescale(zero, "pos")):
        assert not torch.isnan(out).any()
        assert torch.equal(out, torch.zeros_like(zero))
    assert rescale(zero, "neg").eq(0).all()
    assert abs_max_grayscale(zero).eq(0).all()
    assert is_blank(zero).tolist() == [True, True]


def test_constant_and_nan_maps_are_blank_and_normalize_to_zero():
    maps = torch.stack([torch.full((3, 3), 7.0), torch.eye(3), torch.eye(3)])
    maps[2, 0, 0] = float("nan")
    assert is_blank(maps).tolist() == [True, False, True]
    out = normalize(maps)
    assert torch.isfinite(out).all()
    assert out[0].eq(0).all() and out[2].eq(0).all()
    torch.testing.assert_close(out[1], torch.eye(3))


def test_normalize_is_per_sample_in_a_batch():
    a = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    batch = torch.stack([a, 100 * a - 50, torch.zeros(2, 2)])
    out = normalize(batch)
    torch.testing.assert_close(out[0], a / 3)
    torch.testing.assert_close(out[1], a / 3)
    assert out[2].eq(0).all()
    torch.testing.assert_close(normalize(batch[1:2])[0], out[1])  # alone = in a batch


def test_normalize_over_the_whole_batch():
    batch = torch.tensor([[[0.0, 1.0]], [[2.0, 4.0]]])
    torch.testing.assert_close(normalize(batch, per_sample=False), batch / 4)


def test_integer_maps_are_accepted():
    assert normalize(torch.tensor([[0, 2, 4]])).tolist() == [[0.0, 0.5, 1.0]]


# rescale


def test_rescale_pos_neg_all_exact_values():
    m = tiny()
    torch.testing.assert_close(rescale(m, "pos"), torch.tensor([[[[0.0, 0.0], [0.25, 1.0]]]]))
    torch.testing.assert_close(rescale(m, "neg"), torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]]))
    torch.testing.assert_close(rescale(m, "all"), normalize(m))


def test_rescale_neg_uses_its_own_maximum():
    m = torch.tensor([[[[-1.0, -4.0], [10.0, 0.0]]]])
    torch.testing.assert_close(rescale(m, "neg"), torch.tensor([[[[0.25, 1.0], [0.0, 0.0]]]]))


def test_rescale_without_positive_or_negative_part_is_zero():
    only_neg = -torch.rand(1, 3, 4, 4) - 0.1
    assert rescale(only_neg, "pos").eq(0).all()
    assert rescale(only_neg.neg(), "neg").eq(0).all()


def test_rescale_is_per_sample():
    m = torch.cat([tiny(), 10 * tiny(), -tiny()])
    out = rescale(m, "pos")
    torch.testing.assert_close(out[0], out[1])
    torch.testing.assert_close(out[2], rescale(tiny(), "neg")[0])


def test_rescale_unknown_mode_is_a_typed_error_with_suggestions():
    with pytest.raises(DisplayError, match="did you mean: pos") as info:
        rescale(tiny(), "poss")
    assert isinstance(info.value, errors.CnnvisError)
    assert isinstance(info.value, ValueError)


# grayscale


def test_grayscale_weights():
    m = torch.zeros(1, 3, 1, 3)
    m[0, 0, 0, 0] = 1.0  # pure red
    m[0, 1, 0, 1] = 1.0  # pure green
    m[0, 2, 0, 2] = -1.0  # negative blue keeps its sign
    torch.testing.assert_close(grayscale(m), torch.tensor([[[0.299, 0.587, -0.114]]]))


def test_grayscale_of_equal_channels_is_the_channel():
    c = torch.randn(2, 1, 5, 5)
    torch.testing.assert_close(grayscale(c.repeat(1, 3, 1, 1)), c[:, 0])


def test_grayscale_rejects_wrong_shapes():
    with pytest.raises(DisplayError, match="3 channels"):
        grayscale(torch.zeros(1, 4, 2, 2))
    with pytest.raises(DisplayError, match="batch"):
        grayscale(torch.zeros(3, 2, 2))


def test_abs_max_grayscale_matches_the_tutorial_numpy_formula():
    torch.manual_seed(0)
    m = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    out = abs_max_grayscale(m)
    for i in range(2):
        g = np.abs(m[i].numpy()).sum(axis=0)
        lo, hi = g.min(), np.percentile(g, 99)
        expected = np.clip((g - lo) / (hi - lo), 0, 1)
        np.testing.assert_allclose(out[i].numpy(), expected, rtol=1e-12, atol=1e-12)


def test_abs_max_grayscale_hand_values():
    m = torch.zeros(1, 3, 1, 2)
    m[0, :, 0, 0] = torch.tensor([1.0, -2.0, 1.0])  # |.| sums to 4
    m[0, 0, 0, 1] = -2.0  # sums to 2
    # P99 of [4, 2] = 2 + 0.99 * 2 = 3.98; min 2
    out = abs_max_grayscale(m)
    torch.testing.assert_close(out, torch.tensor([[[1.0, 0.0]]]))
    out50 = abs_max_grayscale(m, percentile=50)  # P50 = 3: (4-2)/(3-2) clipped to 1
    torch.testing.assert_close(out50, torch.tensor([[[1.0, 0.0]]]))


def test_abs_max_grayscale_sparse_map_falls_back_to_the_maximum():
    m = torch.zeros(1, 3, 20, 20)  # 2 of 400 pixels non-zero: P99 == min == 0
    m[0, 0, 3, 4] = 2.0
    m[0, 1, 5, 6] = -1.0
    out = abs_max_grayscale(m)
    assert torch.isfinite(out).all()
    assert out[0, 3, 4] == 1.0 and out[0, 5, 6] == 0.5
    assert out.sum() == 1.5


def test_abs_max_grayscale_half_precision():
    out = abs_max_grayscale(torch.randn(1, 3, 8, 8).to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_abs_max_grayscale_is_per_sample():
    torch.manual_seed(3)
    batch = torch.randn(3, 3, 10, 10)
    batch[1] *= 1000
    batch[2] = 0
    out = abs_max_grayscale(batch)
    for i in range(3):
        torch.testing.assert_close(out[i], abs_max_grayscale(batch[i : i + 1])[0])
    assert out[2].eq(0).all()


# symmetric / relu / upsample


def test_symmetric_keeps_zero_at_zero():
    m = torch.tensor([[-1.0, 0.0, 4.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(symmetric(m), torch.tensor([[-0.25, 0.0, 1.0], [0.0, 0.0, 0.0]]))


def test_relu():
    assert relu(torch.tensor([[-1.0, 0.0, 2.0]])).tolist() == [[0.0, 0.0, 2.0]]


def test_upsample_shape_and_values():
    m = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    out = upsample(m, 4)
    assert out.shape == (1, 4, 4)
    # align_corners=False: the corner pixel repeats the corner value, the next one blends 1/4
    assert out[0, 0, 0] == 0.0 and out[0, 3, 3] == 3.0
    torch.testing.assert_close(out[0, 0, 1], torch.tensor(0.25))
    assert upsample(m, (3, 5), mode="nearest").shape == (1, 3, 5)


def test_upsample_keeps_a_constant_map_constant_and_validates():
    out = upsample(torch.full((2, 7, 7), 0.5), (224, 224))
    assert out.shape == (2, 224, 224) and torch.allclose(out, torch.tensor(0.5))
    with pytest.raises(DisplayError, match="bilinear"):
        upsample(torch.zeros(1, 2, 2), 4, mode="bilnear")
    with pytest.raises(DisplayError, match="batch"):
        upsample(torch.zeros(2, 2), 4)
