"""An evaluation as text: the terminal table and the CSV files (scores, summary, verdicts,
curves, randomization), and the formatting the HTML section shares with them."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .metrics import METRICS, RANDOMIZATION_MODES

if TYPE_CHECKING:
    from .result import Evaluation
    from .verdicts import Comparison, Interval

ARROW = {"lower": "↓", "higher": "↑"}


def fmt_value(value: float | None) -> str:
    """A score with three decimals; "-" for none or NaN."""
    return (
        "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"
    )


def header_line(ev: Evaluation, methods: str = "") -> str:
    """Model, images, [methods,] the metrics' forward passes (if any), seconds."""
    parts = [ev.model, f"{len(ev.images)} image(s)"] + ([methods] if methods else [])
    if ev.forwards:
        parts.append(f"{ev.forwards} forward passes for the metrics")
    return ", ".join([*parts, f"{ev.seconds:.1f} s"])


def marked_pairs(comparisons: Sequence[Comparison]) -> dict[tuple[str, str], str]:
    """The mark of each (method, metric) cell: "!" when the method is worse than some baseline
    (a significant paired difference), "+" when it is better than every baseline it was
    compared with; no mark otherwise (no evidence either way, ties included)."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for c in comparisons:
        grouped.setdefault((c.method, c.metric), []).append(c.verdict)
    marks = {}
    for key, verdicts in grouped.items():
        if "worse" in verdicts:
            marks[key] = "!"
        elif all(v == "better" for v in verdicts):
            marks[key] = "+"
    return marks


def cell(interval: Interval) -> str:
    """A table cell: mean ± half the 95% interval ("0.195±0.040"); the mean alone with one
    image; "-" with none."""
    if interval.n == 0:
        return "-"
    if math.isnan(interval.half_width):
        return fmt_value(interval.mean)
    return f"{interval.mean:.3f}±{interval.half_width:.3f}"


STATISTICS = (
    "paired over images: mean difference method - baseline [95% bootstrap CI], Wilcoxon "
    "signed-rank p, matched-pairs rank-biserial r; alpha 0.05 per comparison"
)


def verdict_lines(comparisons: Sequence[Comparison]) -> list[str]:
    """One line per comparison with a verdict ("+" better, "!" worse), then how many showed
    no evidence either way."""
    lines = []
    for c in comparisons:
        if c.verdict == "no evidence":
            continue
        mark = "+" if c.verdict == "better" else "!"
        lines.append(
            f"  {mark} {c.method} {c.verdict} than {c.baseline} on {c.metric}"
            f"{ARROW[c.better]}: {c.mean:+.3f} [{c.low:+.3f}, {c.high:+.3f}], "
            f"p {c.p:.3g}, r {c.effect:+.2f}, {c.n} images"
        )
    quiet = sum(c.verdict == "no evidence" for c in comparisons)
    if quiet:
        lines.append(
            f"  no evidence either way in {quiet} of {len(comparisons)} comparisons "
            "(ties included; see verdicts.csv)"
        )
    return lines


# ----------------------------------------------------------------------------- text


def text_table(ev: Evaluation) -> str:
    """Mean ± 95% CI per map x metric (↓ lower / ↑ higher is better), "!" where a method is
    worse than a baseline and "+" where it is better than all of them (paired tests over the
    images); the verdicts, randomization, flags and notes follow."""
    comparisons = ev.comparisons()
    marks = marked_pairs(comparisons)
    metrics = [m for m in ev.metrics if m in METRICS]
    lines = [f"cnnvis evaluate: {header_line(ev)}"]
    if metrics:
        names = [*ev.methods, *ev.baselines]
        width = max(12, *(len(n) + 3 for n in names))
        heads = [f"{m}{ARROW[METRICS[m].better]}" for m in metrics]
        cells = {(n, m): cell(ev.interval(n, m)) for n in names for m in metrics}
        cols = [
            max(9, len(h), *(len(cells[n, m]) for n in names))
            for h, m in zip(heads, metrics, strict=True)
        ]
        lines.append("")
        lines.append(
            " " * width + "  ".join(h.rjust(c + 1) for h, c in zip(heads, cols, strict=True))
        )
        for name in names:
            label = name if name in ev.methods else f"  {name}"
            row = [
                cells[name, m].rjust(c) + marks.get((name, m), " ")
                for m, c in zip(metrics, cols, strict=True)
            ]
            lines.append(label.ljust(width) + "  ".join(row))
            if name == ev.methods[-1] and ev.baselines:
                lines.append("  baselines:")
        counts = {m: ev.count(m) for m in metrics}
        if len(set(counts.values())) > 1:
            lines.append("images: " + ", ".join(f"{m} {n}" for m, n in counts.items()))
        if any("±" in text for text in cells.values()):
            lines.append("± half the 95% bootstrap interval of the mean over the images")
    note = ev.verdict_note(comparisons)
    if comparisons and not note:
        lines += ["", f"verdicts ({STATISTICS}):", *verdict_lines(comparisons)]
    elif note:
        lines += ["", note]
        if any(c.verdict != "no evidence" for c in comparisons):
            lines += [f"verdicts ({STATISTICS}):", *verdict_lines(comparisons)]
    for result in _randomization_summary(ev):
        lines += ["", *result]
    flags = ev.flags
    if flags:
        lines += ["", "! map ignores randomized weights:", *[f"  {f}" for f in flags]]
    if ev.notes:
        lines += ["", "notes:"]
        lines += [f"  {n}" for n in ev.notes]
    return "\n".join(lines)


def _randomization_summary(ev: Evaluation) -> list[list[str]]:
    """For each mode: per method, Spearman |.| and signed after the top group, the top three
    and all groups (cascading) or the top group and the lowest step (independent), averaged
    over images."""
    blocks = []
    for mode in RANDOMIZATION_MODES:
        results = [r for r in ev.randomization if r.mode == mode]
        if not results:
            continue
        last = len(results[0].steps) - 1
        if mode == "cascading":
            picks = [(f"after {results[0].steps[1]}", 1), ("after top 3", min(3, last))]
            picks.append((f"after all {last}", last))
        else:
            picks = [(f"only {results[0].steps[1]}", 1), ("lowest", -1)]
        lines = [
            f"{mode} randomization ({len(results)} image(s), {last} groups from the top), "
            "similarity to the trained model's map (1 = unchanged), Spearman |.| / signed:"
        ]
        width = max(13, *(len(label) for label, _ in picks)) + 2
        lines.append(" " * 18 + "".join(label.rjust(width) for label, _ in picks))
        for method in results[0].similarity:
            cells = []
            for _, at in picks:
                pair = []
                for measure in ("spearman-abs", "spearman"):
                    if measure not in results[0].similarity[method]:
                        continue
                    values = [_at(r.similarity[method][measure], at) for r in results]
                    pair.append(f"{sum(values) / len(values):.2f}")
                cells.append(" / ".join(pair).rjust(width))
            lines.append(f"{method:18s}" + "".join(cells))
        blocks.append(lines)
    return blocks


def _at(values: Sequence[float], at: int) -> float:
    return min(values[1:]) if at < 0 else values[at]


# ----------------------------------------------------------------------------- CSV


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv(rows: list[list[Any]]) -> str:
    """Rows as CSV; text cells a spreadsheet would run as formulas escaped (`spreadsheet_safe`)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([spreadsheet_safe(c) for c in r] for r in rows)
    return out.getvalue()


def spreadsheet_safe(cell: Any) -> Any:
    """A text cell starting with =, +, -, @, tab or CR (a file named '=cmd.png') prefixed with
    "'" so a spreadsheet shows it as text instead of running it; numbers such as '-0.5' stay."""
    if not isinstance(cell, str) or not cell.startswith(FORMULA_STARTS):
        return cell
    try:
        float(cell)
    except ValueError:
        return "'" + cell
    return cell


def scores_csv(ev: Evaluation) -> str:
    """image, map, role, metric, value, better, class: one row per score."""
    rows: list[list[Any]] = [["image", "map", "role", "metric", "value", "better", "class"]]
    for s in ev.scores:
        target = ev.targets.get(s.image, (None, "", 0.0))
        rows.append(
            [s.image, s.map, s.role, s.metric, repr(s.value), METRICS[s.metric].better, target[0]]
        )
    return _csv(rows)


def summary_csv(ev: Evaluation) -> str:
    """map, role, metric, mean, ci_low, ci_high (95% bootstrap over the images), images,
    better."""
    rows: list[list[Any]] = [
        ["map", "role", "metric", "mean", "ci_low", "ci_high", "images", "better"]
    ]
    for name in ev.maps:
        for metric in ev.metrics:
            if metric not in METRICS:
                continue
            interval = ev.interval(name, metric)
            if interval.n == 0:
                continue
            role = "method" if name in ev.methods else "baseline"
            rows.append(
                [
                    name,
                    role,
                    metric,
                    repr(interval.mean),
                    repr(interval.low),
                    repr(interval.high),
                    interval.n,
                    METRICS[metric].better,
                ]
            )
    return _csv(rows)


VERDICT_COLUMNS = (
    "method", "baseline", "metric", "better", "images", "method_mean", "baseline_mean",
    "mean", "ci_low", "ci_high", "p", "effect", "verdict",
)  # fmt: skip


def verdict_row(c: Comparison) -> dict[str, Any]:
    """A comparison as the CSV and JSON carry it: `mean` is the mean difference method -
    baseline, `ci_low`/`ci_high` its 95% bootstrap interval, `p` the Wilcoxon signed-rank
    p-value, `effect` the matched-pairs rank-biserial correlation (None for NaN)."""
    values = (
        c.method, c.baseline, c.metric, c.better, c.n, c.method_mean, c.baseline_mean,
        c.mean, c.low, c.high, c.p, c.effect, c.verdict,
    )  # fmt: skip
    return {
        k: None if isinstance(v, float) and math.isnan(v) else v
        for k, v in zip(VERDICT_COLUMNS, values, strict=True)
    }


def verdicts_csv(ev: Evaluation) -> str:
    """One row per method x baseline x metric comparison (`VERDICT_COLUMNS`)."""
    rows: list[list[Any]] = [list(VERDICT_COLUMNS)]
    for c in ev.comparisons():
        row = verdict_row(c)
        rows.append(["" if row[k] is None else row[k] for k in VERDICT_COLUMNS])
    return _csv(rows)


def curves_csv(ev: Evaluation) -> str:
    """image, map, metric, fraction, probability: every point of every curve."""
    rows: list[list[Any]] = [["image", "map", "metric", "fraction", "probability"]]
    for c in ev.curves:
        for f, s in zip(c.fractions.tolist(), c.scores.tolist(), strict=True):
            rows.append([c.image, c.map, c.metric, repr(f), repr(s)])
    return _csv(rows)


def randomization_csv(ev: Evaluation) -> str:
    """image, mode, step, group, method, measure, similarity."""
    rows: list[list[Any]] = [["image", "mode", "step", "group", "method", "measure", "similarity"]]
    for r in ev.randomization:
        for method, measures in r.similarity.items():
            for measure, values in measures.items():
                for step, value in enumerate(values):
                    rows.append(
                        [r.image, r.mode, step, r.steps[step], method, measure, repr(value)]
                    )
    return _csv(rows)
