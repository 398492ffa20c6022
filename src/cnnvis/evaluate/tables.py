"""An evaluation as text: the terminal table and the CSV files (scores, summary, curves,
randomization), and the formatting the HTML section shares with them."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .metrics import METRICS, RANDOMIZATION_MODES

if TYPE_CHECKING:
    from .result import Evaluation, Flag

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


def flagged_pairs(flags: Sequence[Flag]) -> set[tuple[str, str]]:
    """The (method, metric) pairs that have a flag."""
    return {(f.method, f.metric) for f in flags}


# ----------------------------------------------------------------------------- text


def text_table(ev: Evaluation) -> str:
    """Mean per map x metric (↓ lower / ↑ higher is better); '!' marks a method that does not
    beat every baseline on that metric; flags, randomization and notes follow."""
    summary, flags = ev.summary(), ev.flags
    marked = flagged_pairs(flags)
    metrics = [m for m in ev.metrics if m in METRICS]
    lines = [f"cnnvis evaluate: {header_line(ev)}"]
    if metrics:
        names = [*ev.methods, *ev.baselines]
        width = max(12, *(len(n) + 2 for n in names))
        heads = [f"{m}{ARROW[METRICS[m].better]}" for m in metrics]
        cols = [max(9, len(h)) for h in heads]
        lines.append("")
        lines.append(" " * width + "  ".join(h.rjust(c) for h, c in zip(heads, cols, strict=True)))
        for name in names:
            label = name if name in ev.methods else f"  {name}"
            cells = []
            for metric, c in zip(metrics, cols, strict=True):
                text = fmt_value(summary.get(name, {}).get(metric))
                text += "!" if (name, metric) in marked else " "
                cells.append(text.rjust(c))
            lines.append(label.ljust(width) + "  ".join(cells))
            if name == ev.methods[-1] and ev.baselines:
                lines.append("  baselines:")
        counts = {m: ev.count(m) for m in metrics}
        if len(set(counts.values())) > 1:
            lines.append("images: " + ", ".join(f"{m} {n}" for m, n in counts.items()))
    for result in _randomization_summary(ev):
        lines += ["", *result]
    if flags:
        lines += ["", f"! {flag_heading(flags)}:", *flag_lines(flags)]
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


def flag_heading(flags: Sequence[Flag]) -> str:
    """What the flags say, e.g. "does not beat a baseline / map ignores randomized weights"."""
    reasons = []
    if any(f.metric in METRICS for f in flags):
        reasons.append("does not beat a baseline")
    if any(f.metric in RANDOMIZATION_MODES for f in flags):
        reasons.append("map ignores randomized weights")
    return " / ".join(reasons)


def flag_lines(flags: Sequence[Flag]) -> list[str]:
    """One line per method and metric, the baselines it does not beat listed together."""
    grouped: dict[tuple[str, str], list[Flag]] = {}
    for f in flags:
        grouped.setdefault((f.method, f.metric), []).append(f)
    lines = []
    for (method, metric), group in grouped.items():
        if metric in RANDOMIZATION_MODES:
            lines += [f"  {f}" for f in group]
            continue
        others = ", ".join(f"{f.baseline} {f.baseline_value:.3f}" for f in group)
        notes = {f.note for f in group if f.note}
        line = (
            f"  {method} on {metric} ({METRICS[metric].better} is better): {group[0].value:.3f}, "
            f"not better than {others}"
        )
        lines.append(line + (f" ({'; '.join(sorted(notes))})" if notes else ""))
    return lines


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
    """map, role, metric, mean, images, better, flagged (the baselines it does not beat)."""
    summary, flags = ev.summary(), ev.flags
    rows: list[list[Any]] = [
        ["map", "role", "metric", "mean", "images", "better", "not_better_than"]
    ]
    for name in ev.maps:
        for metric in ev.metrics:
            if metric not in METRICS or metric not in summary.get(name, {}):
                continue
            lost = [f.baseline for f in flags if f.method == name and f.metric == metric]
            role = "method" if name in ev.methods else "baseline"
            rows.append(
                [
                    name,
                    role,
                    metric,
                    repr(summary[name][metric]),
                    ev.count(metric),
                    METRICS[metric].better,
                    " ".join(lost),
                ]
            )
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
