"""Verdicts with statistics: is a method better than a baseline on a metric, over the images?

Every comparison is paired by image: d_i = method_i - baseline_i on the images that have both
values (pairs with a NaN or infinite value are left out and counted). It reports

- the mean difference with a 95% paired-bootstrap confidence interval (percentile method,
  `RESAMPLES` resamples of the images with replacement, a seeded NumPy generator);
- the two-sided Wilcoxon signed-rank test (`scipy.stats.wilcoxon`; zero differences dropped,
  Wilcoxon's own convention; exact null distribution for small samples, as SciPy chooses);
- the effect size as the matched-pairs rank-biserial correlation (Kerby 2014):
  r = (T+ - T-) / (T+ + T-), T+/T- the rank sums of the positive/negative differences (ranks of
  |d| among the non-zero differences, ties averaged); it lies in [-1, 1] and, like the mean
  difference, is signed method minus baseline;
- the verdict: "better" or "worse" when p < alpha, at least `MIN_IMAGES` differences are not
  zero, and the mean difference and the rank-biserial correlation both point that way, in the
  metric's own direction (lower or higher is better); otherwise "no evidence". Ties are never a
  verdict: zero differences carry no evidence either way (a pointing game of 1 vs 1 on most
  images leaves too few pairs that differ).

With fewer than `MIN_IMAGES` (6) usable pairs, the signed-rank test cannot reach p < 0.05 at
all (its smallest two-sided p with n pairs is 2 / 2^n: 0.0625 at n = 5, 0.031 at n = 6), so no
comparison gets a verdict and `too_few_note` says so once. The alpha is per comparison, not
corrected for the number of comparisons.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

Verdict = Literal["better", "worse", "no evidence"]
Direction = Literal["lower", "higher"]

ALPHA = 0.05
RESAMPLES = 2000
LEVEL = 0.95
MIN_IMAGES = 6  # the fewest pairs with which a two-sided signed-rank p can be below 0.05
EFFECT = "matched-pairs rank-biserial correlation"


@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap confidence interval (NaN bounds with fewer than 2 values)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        """Half the interval's width (the "±" of a table cell; NaN without an interval)."""
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class Comparison:
    """One method against one baseline on one metric, paired over `n` images.

    `mean`, `low`, `high`: the mean of method - baseline and its confidence interval; `p`: the
    Wilcoxon signed-rank p-value (NaN when it cannot be computed); `effect`: the matched-pairs
    rank-biserial correlation (method - baseline); `dropped`: pairs left out for a non-finite
    value."""

    method: str
    baseline: str
    metric: str
    better: Direction
    n: int
    method_mean: float
    baseline_mean: float
    mean: float
    low: float
    high: float
    p: float
    effect: float
    verdict: Verdict
    dropped: int = 0

    def __str__(self) -> str:
        """E.g. "grad-cam vs random on deletion (lower is better): better, -0.108 [-0.15,
        -0.07], p = 0.031, r = -1.00, 8 images"."""
        p = "-" if math.isnan(self.p) else f"{self.p:.3g}"
        return (
            f"{self.method} vs {self.baseline} on {self.metric} ({self.better} is better): "
            f"{self.verdict}, difference {self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}], "
            f"p = {p}, r = {self.effect:+.2f}, {self.n} image(s)"
        )


def mean_interval(
    values: Sequence[float],
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
) -> Interval:
    """The mean of the finite `values` and its percentile-bootstrap confidence interval."""
    x = _finite(values)
    if x.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    if x.size < 2:
        return Interval(float(x.mean()), math.nan, math.nan, int(x.size))
    low, high = bootstrap_interval(x, seed=seed, resamples=resamples, level=level)
    return Interval(float(x.mean()), low, high, int(x.size))


def bootstrap_interval(
    values: Sequence[float] | np.ndarray,
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: resample the values with replacement
    `resamples` times (NumPy `default_rng(seed)`), take the (1 - level) / 2 and (1 + level) / 2
    quantiles of the resampled means. Paired data: pass the differences."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return math.nan, math.nan
    if not 0 < level < 1 or resamples < 1:
        raise ValueError(
            f"level must lie in (0, 1) and resamples be >= 1; got {level}, {resamples}"
        )
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, x.size, size=(resamples, x.size))
    means = x[picks].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def wilcoxon_p(differences: Sequence[float] | np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (zeros dropped); 1.0 when
    every difference is zero, NaN for no differences at all."""
    d = np.asarray(differences, dtype=np.float64)
    if d.size == 0:
        return math.nan
    if not np.any(d != 0):
        return 1.0
    return float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def rank_biserial(differences: Sequence[float] | np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation (T+ - T-) / (T+ + T-) over the non-zero
    differences, ranks of |d| with ties averaged; 0 when every difference is zero."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[d != 0]
    if d.size == 0:
        return 0.0
    ranks = stats.rankdata(np.abs(d))
    plus, minus = float(ranks[d > 0].sum()), float(ranks[d < 0].sum())
    return (plus - minus) / (plus + minus)


def compare(
    method_values: Sequence[float],
    baseline_values: Sequence[float],
    *,
    better: Direction,
    method: str = "method",
    baseline: str = "baseline",
    metric: str = "metric",
    alpha: float = ALPHA,
    seed: int = 0,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
) -> Comparison:
    """Paired comparison of a method's values with a baseline's, one pair per image (same
    order); the verdict in the direction `better` ("lower" or "higher")."""
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', got {better!r}")
    if len(method_values) != len(baseline_values):
        raise ValueError(
            f"paired values must have the same length, got {len(method_values)} and "
            f"{len(baseline_values)}"
        )
    a = np.asarray(method_values, dtype=np.float64)
    b = np.asarray(baseline_values, dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    d = a - b
    n = int(d.size)
    mean = float(d.mean()) if n else math.nan
    low, high = bootstrap_interval(d, seed=seed, resamples=resamples, level=level)
    p = wilcoxon_p(d) if n else math.nan
    effect = rank_biserial(d) if n else math.nan
    verdict: Verdict = "no evidence"
    if int(np.count_nonzero(d)) >= MIN_IMAGES and p < alpha:
        sign = -1.0 if better == "lower" else 1.0
        if sign * mean > 0 and sign * effect > 0:
            verdict = "better"
        elif sign * mean < 0 and sign * effect < 0:
            verdict = "worse"
    return Comparison(
        method=method,
        baseline=baseline,
        metric=metric,
        better=better,
        n=n,
        method_mean=float(a.mean()) if n else math.nan,
        baseline_mean=float(b.mean()) if n else math.nan,
        mean=mean,
        low=low,
        high=high,
        p=p,
        effect=effect,
        verdict=verdict,
        dropped=int((~keep).sum()),
    )


def too_few_note(n: int) -> str:
    """The one plain sentence shown instead of verdicts when fewer than `MIN_IMAGES` images
    could be compared."""
    return (
        f"{n} image(s): too few to tell methods from baselines. The paired test (Wilcoxon "
        f"signed-rank) cannot reach p < {ALPHA:g} with fewer than {MIN_IMAGES} images, so "
        f"nothing is marked better or worse; evaluate {MIN_IMAGES} or more images for verdicts."
    )


def _finite(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    return x[np.isfinite(x)]
