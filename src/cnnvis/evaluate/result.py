"""What `evaluate` returns: per-image scores, curves, randomization results, and the flags
raised where a method does no better than a baseline."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..explanation import short_list
from .baselines import ORDER_METRICS, REVERSED_PREFIX, SHARED_BASELINES
from .faithfulness import Curve
from .metrics import METRICS, RANDOMIZATION_MODES
from .sanity import RandomizationResult

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
    """A method that does not beat a baseline on a metric (or fails a sanity check)."""

    method: str
    metric: str
    baseline: str
    value: float
    baseline_value: float
    note: str = ""

    def __str__(self) -> str:
        if self.metric in RANDOMIZATION_MODES:
            return (
                f"{self.method}: its map barely changes under {self.metric} randomization, "
                f"{self.baseline} (Spearman with and without |.| at least {self.value:.2f}, "
                f"mean over images; >= {self.baseline_value:.2f} flags it): it does not depend "
                "on those weights"
            )
        better = METRICS[self.metric].better
        text = (
            f"{self.method} does not beat {self.baseline} on {self.metric} "
            f"({self.value:.3f} vs {self.baseline_value:.3f}; {better} is better)"
        )
        return f"{text}: {self.note}" if self.note else text


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
    forwards: int = 0

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

    @property
    def flags(self) -> list[Flag]:
        """Every (method, metric, baseline) where the method's mean is not strictly better, and
        every method whose map survives full cascading randomization."""
        summary = self.summary()
        found: list[Flag] = []
        for method in self.methods:
            mine = summary.get(method, {})
            for metric in self.metrics:
                if metric not in METRICS or metric not in mine:
                    continue
                bases = list(SHARED_BASELINES)
                if metric in ORDER_METRICS:
                    bases.append(f"{REVERSED_PREFIX}{method}")
                for base in bases:
                    other = summary.get(base, {}).get(metric)
                    if other is None or METRICS[metric].beats(mine[metric], other):
                        continue
                    note = ""
                    if base == "centre" and METRICS[metric].group == "localisation":
                        note = (
                            "objects in photos are mostly centred, so the centre baseline is strong"
                        )
                    found.append(Flag(method, metric, base, mine[metric], other, note))
        found += self._insensitive()
        return found

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
        """The terminal table: mean per map x metric, flags and notes below."""
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

    def save(self, folder: str | Path) -> dict[str, Path]:
        """Write CSVs, PNGs, evaluation.html and evaluation.json into `folder`."""
        from .saving import save

        return save(self, Path(folder))

    def _repr_html_(self) -> str:
        return self.html()
