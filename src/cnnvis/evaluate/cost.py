"""What an evaluation costs, known before it runs: the forward passes (images through the model)
of each stage, computed from the protocol.

Per image: one recorded forward explains every method (`api.explain_many`); the faithfulness
metrics score 3 shared inputs (the image and its two substrates) and, for every map,
`steps - 1` inputs per curve (deletion, insertion; the method's reversed order too), one for
Average Drop / Increase and one per ROAD fraction and order (not for reversed orders: their ROAD
is their method's, swapped); the pointing games need none; each randomization mode explains the
trained model once and once more per randomized group. Methods that make many passes of their
own (integrated gradients, Score-CAM, ...) add those on top; `Cost.uncounted` names them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

CURVES = ("deletion", "insertion")
DROP = ("average-drop", "increase")
ROAD = ("road-morf", "road-lerf")


@dataclass(frozen=True)
class Cost:
    """Forward passes of an evaluation: `explain`, `metrics` and `randomization` per image,
    over `images` images; `uncounted` the methods whose own extra passes are not included."""

    images: int
    explain: int
    metrics: int
    randomization: int = 0
    uncounted: tuple[str, ...] = ()
    layer_probe: int = 0  # once per run: the forward on a blank input that finds the layer

    @property
    def per_image(self) -> int:
        """Forward passes for one image, every stage."""
        return self.explain + self.metrics + self.randomization

    @property
    def total(self) -> int:
        """Forward passes of the whole evaluation."""
        return self.layer_probe + self.images * self.per_image

    def __str__(self) -> str:
        """E.g. "150 forward passes (1 image: 1 to explain, 149 for the metrics)"."""
        parts = [f"{self.explain} to explain", f"{self.metrics} for the metrics"]
        if self.randomization:
            parts.append(f"{self.randomization} for the randomization checks")
        if self.layer_probe:
            parts.append(f"and {self.layer_probe} once to find the layer")
        each = "1 image" if self.images == 1 else f"{self.images} images, each"
        text = f"{self.total:,} forward passes ({each}: {', '.join(parts)})"
        if self.uncounted:
            text += f"; {', '.join(self.uncounted)} add passes of their own"
        return text


def metric_passes(
    maps: int, reversed_orders: int, metrics: Sequence[str], steps: int, fractions: int
) -> int:
    """Forward passes of the faithfulness metrics on one image: `maps` maps (methods and
    baselines, each random draw a map) and `reversed_orders` reversed orders."""
    curves = sum(m in metrics for m in CURVES)
    drop = any(m in metrics for m in DROP)
    road = sum(m in metrics for m in ROAD)
    if not (curves or drop or road):
        return 0
    anchors = 3  # the image, the deletion substrate, the insertion substrate
    curve_rows = (maps + reversed_orders) * curves * (steps - 1)
    return anchors + curve_rows + maps * (int(drop) + road * fractions)


def shared_maps(baselines: Sequence[str], draws: int) -> int:
    """How many baseline maps every image has: `draws` random maps, centre, edges."""
    return sum(
        draws if b == "random" else 1 for b in baselines if b in ("random", "centre", "edges")
    )


def evaluation_cost(
    *,
    images: int,
    methods: Sequence[str],
    metrics: Sequence[str],
    baselines: Sequence[str],
    steps: int,
    random_draws: int,
    road_fractions: int,
    randomization_steps: int = 0,
    uncounted: Sequence[str] = (),
    layer_probe: int = 0,
) -> Cost:
    """The forward passes of an evaluation of `images` images: `methods` explained together,
    `metrics` (per-image names and randomization modes) under the protocol's `steps`,
    `random_draws` and number of ROAD fractions; `randomization_steps` the randomized groups
    per mode."""
    maps = len(methods) + shared_maps(baselines, random_draws)
    orders = len(methods) if "reversed" in baselines else 0
    modes = sum(m in ("cascading", "independent") for m in metrics)
    return Cost(
        images=images,
        explain=1,
        metrics=metric_passes(maps, orders, metrics, steps, road_fractions),
        randomization=modes * (1 + randomization_steps),
        uncounted=tuple(uncounted),
        layer_probe=layer_probe,
    )
