"""What `evaluate` returns: per-image scores, curves, randomization results; every method
compared with every baseline, paired over the images (`verdicts`); and the flags raised where a
map ignores randomized weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..explanation import short_list
from .baselines import ORDER_METRICS, REVERSED_PREFIX, SHARED_BASELINES
from .faithfulness import Curve
from .metrics import METRICS
from .protocol import stable_seed
from .sanity import RandomizationResult
from .verdicts import MIN_IMAGES, Comparison, Interval, compare, mean_interval, too_few_note

INSENSITIVE = 0.5  # Spearman |.| and signed, mean over images: the map did not change


@dataclass(frozen=True)
class Score:
    """One number: `metric` of map `map` (a method or a baseline) on image `image`."""

    image: str
    map: str
    role: str  # "method" | "baseline"
    metric: str
    value: float


@dataclass(frozen=True)
class Flag:
    """A method whose map survives the cascading randomization of the model's weights (a
    sanity-check failure); comparisons with baselines are `Comparison`s (see `verdicts`)."""

    method: str
    metric: str
    baseline: str
    value: float
    baseline_value: float
    note: str = ""

    def __str__(self) -> str:
        return (
            f"{self.method}: its map barely changes under {self.metric} randomization, "
            f"{self.baseline} (Spearman with and without |.| at least {self.value:.2f}, "
            f"mean over images; >= {self.baseline_value:.2f} flags it): it does not depend "
            "on those weights"
        )


@dataclass
class Evaluation:
    """The results of `cnnvis.evaluate`: see `table()`, `to_csv()`, `figures()`, `html()`,
    `save(folder)`; `summary()` gives the mean of every map x metric over the images."""

    model: str
    methods: list[str]
    baselines: list[str]
    metrics: list[str]
    images: list[str]
    targets: dict[str, tuple[int, str, float]]
    scores: list[Score] = field(default_factory=list)
    curves: list[Curve] = field(default_factory=list)
    randomization: list[RandomizationResult] = field(default_factory=list)
    protocol: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    forwards: int = 0  # the metrics' forward passes
    planned: int = 0  # every forward pass, as announced before the run (see `cost`)

    def __repr__(self) -> str:
        """One line: what was evaluated and how much came out; `table()` has the numbers."""
        parts = [
            f"model {self.model}",
            f"methods {short_list(self.methods)}",
            f"baselines {short_list(self.baselines)}",
            f"metrics {short_list(self.metrics)}",
            f"{len(self.images)} image{'s' * (len(self.images) != 1)}",
            f"{len(self.scores)} scores",
            f"{len(self.curves)} curves",
        ]
        if self.randomization:
            parts.append(f"{len(self.randomization)} randomization runs")
        if self.failures:
            parts.append(f"failed: {short_list(sorted(self.failures))}")
        parts.append(f"{self.seconds:.1f} s")
        return f"Evaluation({', '.join(parts)})"

    @property
    def maps(self) -> list[str]:
        """Methods first, then baselines: the rows of the table."""
        return [*self.methods, *self.baselines]

    def summary(self) -> dict[str, dict[str, float]]:
        """{map: {metric: mean over the images that have a value}}."""
        sums: dict[tuple[str, str], list[float]] = {}
        for s in self.scores:
            sums.setdefault((s.map, s.metric), []).append(s.value)
        out: dict[str, dict[str, float]] = {}
        for (name, metric), values in sums.items():
            out.setdefault(name, {})[metric] = sum(values) / len(values)
        return out

    def value(self, map: str, metric: str, image: str | None = None) -> float:
        """One score (for `image`) or its mean over the images; NaN when there is none."""
        if image is None:
            return self.summary().get(map, {}).get(metric, float("nan"))
        for s in self.scores:
            if s.map == map and s.metric == metric and s.image == image:
                return s.value
        return float("nan")

    def count(self, metric: str) -> int:
        """How many images have a value for `metric` (e.g. those with boxes)."""
        return len({s.image for s in self.scores if s.metric == metric})

    def interval(self, map: str, metric: str) -> Interval:
        """The mean of `map` on `metric` over the images and its 95% bootstrap interval."""
        values = [s.value for s in self.scores if s.map == map and s.metric == metric]
        return mean_interval(values, seed=stable_seed(self._seed, map, metric))

    def comparisons(self) -> list[Comparison]:
        """Every method against every baseline on every per-image metric it was scored on
        (shared baselines, and the method's own reversed order on the order-based metrics),
        paired over the images that have both values; see `verdicts.compare`."""
        by_map: dict[tuple[str, str], dict[str, float]] = {}
        for s in self.scores:
            by_map.setdefault((s.map, s.metric), {})[s.image] = s.value
        found: list[Comparison] = []
        for method in self.methods:
            for metric in self.metrics:
                mine = by_map.get((method, metric))
                if metric not in METRICS or not mine:
                    continue
                bases = [b for b in self.baselines if b in SHARED_BASELINES]
                if metric in ORDER_METRICS:
                    bases.append(f"{REVERSED_PREFIX}{method}")
                for base in bases:
                    theirs = by_map.get((base, metric))
                    images = [i for i in self.images if i in mine and theirs and i in theirs]
                    if not theirs or not images:
                        continue
                    found.append(
                        compare(
                            [mine[i] for i in images],
                            [theirs[i] for i in images],
                            better="lower" if METRICS[metric].better == "lower" else "higher",
                            method=method,
                            baseline=base,
                            metric=metric,
                            seed=stable_seed(self._seed, method, base, metric),
                        )
                    )
        return found

    def verdict_note(self, comparisons: list[Comparison] | None = None) -> str:
        """The one sentence said instead of verdicts where too few images were compared
        ("" when every metric had enough)."""
        found = self.comparisons() if comparisons is None else comparisons
        most: dict[str, int] = {}
        for c in found:
            most[c.metric] = max(most.get(c.metric, 0), c.n)
        few = [m for m, n in most.items() if n < MIN_IMAGES]
        if not few:
            return ""
        if len(few) == len(most):
            return too_few_note(max(most.values()))
        counts = ", ".join(f"{m} ({most[m]})" for m in few)
        return (
            f"no verdicts on {counts}: fewer than {MIN_IMAGES} images had these scores, too few "
            "for the paired test to reach p < 0.05"
        )

    @property
    def _seed(self) -> int:
        return int(self.protocol.get("seed", 0) or 0)

    @property
    def flags(self) -> list[Flag]:
        """Every method whose map survives cascading randomization (see `_insensitive`);
        comparisons with the baselines are `comparisons()`."""
        return self._insensitive()

    def _insensitive(self) -> list[Flag]:
        """Cascading randomization: a method whose map keeps both Spearman correlations (with
        and without absolute values, mean over images) at or above `INSENSITIVE` after the
        top group (the classifier) or after every group is randomized."""
        results = [r for r in self.randomization if r.mode == "cascading" and len(r.steps) > 1]
        if not results:
            return []
        found = []
        for method in results[0].similarity:
            for step, where in ((1, f"after {results[0].steps[1]}"), (-1, "after every group")):
                values = [
                    min(
                        r.similarity[method].get(m, [1.0])[step]
                        for m in ("spearman-abs", "spearman")
                    )
                    for r in results
                ]
                mean = sum(values) / len(values)
                if mean >= INSENSITIVE:
                    found.append(Flag(method, "cascading", where, mean, INSENSITIVE))
        return found

    # outputs (text in .tables, drawing in .figures, HTML in .html_section, files in .saving)

    def table(self) -> str:
        """The terminal table: mean ± CI per map x metric, verdicts, flags and notes below."""
        from .tables import text_table

        return text_table(self)

    def to_csv(self, path: str | Path | None = None) -> str:
        """Per-image scores as CSV (image, map, role, metric, value); written to `path` if given."""
        from .tables import scores_csv

        text = scores_csv(self)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def figures(self) -> dict[str, Any]:
        """{name: matplotlib Figure}: curves per image, the summary, randomization curves/maps."""
        from .figures import figures

        return figures(self)

    def html(self) -> str:
        """An HTML fragment (<section>) with the tables and the figures as base64 PNGs."""
        from .html_section import html_section

        return html_section(self)

    def save(self, folder: str | Path, *, force: bool = False) -> dict[str, Path]:
        """Write CSVs, PNGs, evaluation.html and evaluation.json into `folder`: a new or empty
        folder or a cnnvis output; one holding other files raises OutputError unless
        `force=True` (see `cnnvis.output_folders`)."""
        from ..output_folders import claim_folder
        from .saving import save

        claim_folder(Path(folder), "evaluate", force)
        return save(self, Path(folder))

    def _repr_html_(self) -> str:
        return self.html()
