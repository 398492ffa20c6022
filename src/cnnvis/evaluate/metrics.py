"""The metrics an evaluation can report: each per-image metric's group and better direction,
the randomization checks, and the groups users can name."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """A per-image metric: its name, group, which direction is better, and a one-line summary."""

    name: str
    group: str
    better: str  # "lower" | "higher"
    summary: str

    def beats(self, a: float, b: float) -> bool:
        """Whether value `a` is strictly better than `b`."""
        return a < b if self.better == "lower" else a > b


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "deletion",
            "faithfulness",
            "lower",
            "AUC of p(class) as the most relevant pixels go first (RISE)",
        ),
        Metric(
            "insertion",
            "faithfulness",
            "higher",
            "AUC of p(class) as the most relevant pixels come back first (RISE)",
        ),
        Metric(
            "average-drop",
            "faithfulness",
            "lower",
            "max(0, Y - O) / Y, O on the image weighted by the map",
        ),
        Metric("increase", "faithfulness", "higher", "share of images where O > Y"),
        Metric(
            "road-morf",
            "faithfulness",
            "lower",
            "mean p(class), most relevant removed first, noisy linear imputation",
        ),
        Metric(
            "road-lerf",
            "faithfulness",
            "higher",
            "mean p(class), least relevant removed first, noisy linear imputation",
        ),
        Metric(
            "pointing-game",
            "localisation",
            "higher",
            "hit if the map's maximum is within the tolerance of the object",
        ),
        Metric(
            "energy-pointing-game",
            "localisation",
            "higher",
            "share of the map's positive mass inside the object",
        ),
    )
}
RANDOMIZATION_MODES: tuple[str, ...] = ("cascading", "independent")
GROUPS: dict[str, tuple[str, ...]] = {
    "faithfulness": tuple(n for n, m in METRICS.items() if m.group == "faithfulness"),
    "localisation": tuple(n for n, m in METRICS.items() if m.group == "localisation"),
    "sanity": RANDOMIZATION_MODES,
}
