"""Verdicts with statistics: constructed paired samples with a known answer, the numbers checked
against SciPy and a hand computation, and the verdicts as an evaluation shows them (table, CSV,
JSON)."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
from scipy import stats

from cnnvis.evaluate.result import Evaluation, Score
from cnnvis.evaluate.saving import to_json
from cnnvis.evaluate.verdicts import (
    MIN_IMAGES,
    bootstrap_interval,
    compare,
    mean_interval,
    rank_biserial,
    wilcoxon_p,
)


def _images(n: int) -> list[str]:
    return [f"img{k}" for k in range(n)]


def _evaluation(method: list[float], baseline: list[float], metric: str = "deletion"):
    """One method "m" and the "random" baseline scored on `metric`, one image per value."""
    images = _images(len(method))
    ev = Evaluation("tiny", ["m"], ["random"], [metric], images, {})
    for image, a, b in zip(images, method, baseline, strict=True):
        ev.scores += [
            Score(image, "m", "method", metric, a),
            Score(image, "random", "baseline", metric, b),
        ]
    return ev


def test_a_map_truly_better_on_20_images_is_better():
    rng = np.random.default_rng(1)
    baseline = rng.uniform(0.2, 0.5, 20)
    method = baseline - 0.05 + rng.normal(0, 0.02, 20)  # deletion: lower is better
    ev = _evaluation(method.tolist(), baseline.tolist())
    [c] = ev.comparisons()
    assert (c.method, c.baseline, c.metric, c.n) == ("m", "random", "deletion", 20)
    assert c.verdict == "better" and c.p < 0.001 and c.high < 0
    assert c.mean == pytest.approx(float((method - baseline).mean()), abs=1e-12)
    text = ev.table()
    assert "m better than random on deletion↓" in text and "±" in text
    assert ev.verdict_note() == ""
    # the same numbers read the other way round are "worse" on a higher-is-better metric
    flipped = _evaluation(method.tolist(), baseline.tolist(), metric="insertion")
    assert flipped.comparisons()[0].verdict == "worse"
    assert "!" in flipped.table().splitlines()[3]  # the method's row is marked


def test_identical_maps_get_no_evidence_and_no_mark():
    values = np.random.default_rng(2).uniform(0, 1, 20).tolist()
    ev = _evaluation(values, values)
    [c] = ev.comparisons()
    assert c.verdict == "no evidence" and c.p == 1.0 and c.effect == 0.0
    assert c.mean == 0.0 and c.low == 0.0 and c.high == 0.0
    text = ev.table()
    assert "!" not in text and "+" not in text.split("verdicts")[0].replace("±", "")
    assert "no evidence either way in 1 of 1 comparisons" in text


def test_one_image_says_too_few_once_and_marks_nothing():
    ev = _evaluation([0.1], [0.9])  # a large difference, but one image
    [c] = ev.comparisons()
    assert c.verdict == "no evidence" and c.n == 1 and math.isnan(c.low)
    text = ev.table()
    assert text.count("too few") == 1 and "1 image(s)" in text
    assert "!" not in text and " better than" not in text
    assert "0.100 " in text  # the mean alone, no interval from one value
    data = to_json(ev)
    assert data["verdicts"][0]["verdict"] == "no evidence" and data["verdict_note"]
    assert data["verdicts"][0]["ci_low"] is None  # NaN written as null
    json.dumps(data, allow_nan=False)


def test_five_images_all_better_are_still_too_few():
    """The smallest two-sided exact signed-rank p with 5 pairs is 2/32 = 0.0625."""
    ev = _evaluation([0.1] * 5, [0.5, 0.6, 0.7, 0.8, 0.9])
    assert ev.comparisons()[0].verdict == "no evidence"
    assert "too few" in ev.table()
    six = _evaluation([0.1] * 6, [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    [c] = six.comparisons()
    assert c.verdict == "better" and c.p == pytest.approx(2 / 2**6)
    assert "too few" not in six.table()


def test_ties_are_never_a_verdict():
    """A pointing game of 1 vs 1 on 19 images and 0 vs 1 on one: one pair differs."""
    method, baseline = [1.0] * 20, [1.0] * 20
    method[3] = 0.0
    ev = _evaluation(method, baseline, metric="pointing-game")
    [c] = ev.comparisons()
    assert c.verdict == "no evidence" and c.effect == -1.0
    assert "!" not in ev.table().splitlines()[3]


def test_same_seed_same_numbers_other_seed_other_interval():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 12).tolist(), rng.normal(0.3, 1, 12).tolist()
    runs = [compare(a, b, better="higher", seed=s) for s in (4, 4, 5)]
    assert runs[0] == runs[1]
    assert (runs[0].low, runs[0].high) != (runs[2].low, runs[2].high)
    assert runs[0].p == runs[2].p and runs[0].mean == runs[2].mean
    ev1, ev2 = _evaluation(a, b), _evaluation(a, b)
    assert ev1.comparisons() == ev2.comparisons()
    assert ev1.interval("m", "deletion") == ev2.interval("m", "deletion")


def test_the_bootstrap_interval_covers_the_true_mean_difference():
    """Paired normal samples with a true mean difference of 0.3: the 95% interval contains it
    in about 95% of 200 independent samples (a binomial(200, 0.95) count lies in 180..198
    with probability > 0.999), and in the one sample checked by itself."""
    rng = np.random.default_rng(4)
    covered = 0
    for k in range(200):
        baseline = rng.normal(1.0, 0.5, 30)
        method = baseline + 0.3 + rng.normal(0, 0.4, 30)
        low, high = bootstrap_interval(method - baseline, seed=k, resamples=1000)
        covered += low <= 0.3 <= high
    assert 180 <= covered <= 198
    baseline = rng.normal(1.0, 0.5, 200)
    c = compare(
        (baseline + 0.3 + rng.normal(0, 0.4, 200)).tolist(), baseline.tolist(), better="higher"
    )
    assert c.low < 0.3 < c.high and c.high - c.low < 0.15


def test_wilcoxon_p_is_scipys_and_the_effect_is_the_rank_biserial_by_hand():
    d = np.array([0.4, -0.1, 0.25, 0.3, 0.0, -0.05, 0.6, 0.2, 0.35, 0.15])
    expected = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue
    assert wilcoxon_p(d) == pytest.approx(float(expected), rel=1e-12)
    # non-zero |d| ranked: .05:1 .1:2 .15:3 .2:4 .25:5 .3:6 .35:7 .4:8 .6:9; T- = 1 + 2 = 3
    assert rank_biserial(d) == pytest.approx((42 - 3) / 45)
    c = compare((1 + d).tolist(), [1.0] * len(d), better="higher")
    assert c.p == pytest.approx(float(expected), rel=1e-12)
    assert c.effect == pytest.approx(39 / 45)


def test_non_finite_pairs_are_left_out_and_counted():
    a = [0.1, float("nan"), 0.2, 0.3, 0.1, 0.2, 0.1, 0.2]
    b = [0.5, 0.5, float("inf"), 0.6, 0.7, 0.5, 0.6, 0.7]
    c = compare(a, b, better="lower")
    assert c.n == 6 and c.dropped == 2 and c.verdict == "better"
    interval = mean_interval([1.0, float("nan"), 3.0])
    assert interval.n == 2 and interval.mean == 2.0


def test_csv_and_json_carry_mean_ci_p_effect_verdict(tmp_path):
    rng = np.random.default_rng(5)
    baseline = rng.uniform(0.2, 0.5, 8)
    ev = _evaluation((baseline - 0.1).tolist(), baseline.tolist())
    ev.save(tmp_path)
    [row] = list(csv.DictReader(io.StringIO((tmp_path / "verdicts.csv").read_text())))
    assert {"mean", "ci_low", "ci_high", "p", "effect", "verdict"} <= set(row)
    assert row["verdict"] == "better" and float(row["mean"]) == pytest.approx(-0.1)
    summary = list(csv.DictReader(io.StringIO((tmp_path / "summary.csv").read_text())))
    assert {"mean", "ci_low", "ci_high"} <= set(summary[0])
    data = json.loads((tmp_path / "evaluation.json").read_text())
    assert data["verdicts"][0]["verdict"] == "better"
    assert data["intervals"]["m"]["deletion"]["images"] == 8
    assert data["statistics"]["effect"] == "matched-pairs rank-biserial correlation"
    assert "better than every baseline" in (tmp_path / "evaluation.html").read_text()


def test_min_images_is_where_the_exact_test_first_reaches_alpha():
    """All differences positive and distinct: the exact p is 2 / 2^n."""
    assert stats.wilcoxon(np.arange(1.0, MIN_IMAGES)).pvalue > 0.05
    assert stats.wilcoxon(np.arange(1.0, MIN_IMAGES + 1)).pvalue < 0.05
