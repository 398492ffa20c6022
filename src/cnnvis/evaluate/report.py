"""The evaluation's outputs: a terminal table, CSV files, matplotlib Figures (never pyplot) and
an HTML fragment with the figures embedded as base64 PNGs, for `cnnvis.run_report` to include."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..html import data_uri, esc
from .result import METRICS, RANDOMIZATION_MODES, Evaluation, Flag
from .similarity import unit_scale

if TYPE_CHECKING:
    from .sanity import RandomizationResult

ARROW = {"lower": "↓", "higher": "↑"}
METHOD_COLORS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#e377c2",
    "#8c564b",
)
BASELINE_STYLE = {
    "random": ("#7f7f7f", "--"),
    "centre": ("#bcbd22", "--"),
    "edges": ("#8c564b", ":"),
}


def _fmt(value: float | None) -> str:
    return (
        "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"
    )


def _header(ev: Evaluation, methods: str = "") -> str:
    """Model, images, [methods,] the metrics' forward passes (if any), seconds."""
    parts = [ev.model, f"{len(ev.images)} image(s)"] + ([methods] if methods else [])
    if ev.forwards:
        parts.append(f"{ev.forwards} forward passes for the metrics")
    return ", ".join([*parts, f"{ev.seconds:.1f} s"])


def _flagged(flags: Sequence[Flag]) -> set[tuple[str, str]]:
    return {(f.method, f.metric) for f in flags}


# ----------------------------------------------------------------------------- text


def text_table(ev: Evaluation) -> str:
    """Mean per map x metric (↓ lower / ↑ higher is better); '!' marks a method that does not
    beat every baseline on that metric; flags, randomization and notes follow."""
    summary, flags = ev.summary(), ev.flags
    marked = _flagged(flags)
    metrics = [m for m in ev.metrics if m in METRICS]
    lines = [f"cnnvis evaluate: {_header(ev)}"]
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
                text = _fmt(summary.get(name, {}).get(metric))
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
        lines += ["", f"! {_flag_heading(flags)}:", *_flag_lines(flags)]
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


def _flag_heading(flags: Sequence[Flag]) -> str:
    reasons = []
    if any(f.metric in METRICS for f in flags):
        reasons.append("does not beat a baseline")
    if any(f.metric in RANDOMIZATION_MODES for f in flags):
        reasons.append("map ignores randomized weights")
    return " / ".join(reasons)


def _flag_lines(flags: Sequence[Flag]) -> list[str]:
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


def _csv(rows: list[list[Any]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


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


# ----------------------------------------------------------------------------- figures


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _style(ev: Evaluation, name: str) -> dict[str, Any]:
    if name in ev.methods:
        return {"color": METHOD_COLORS[ev.methods.index(name) % len(METHOD_COLORS)], "lw": 2.0}
    if name.startswith("reversed:"):
        method = name.split(":", 1)[1]
        color = (
            METHOD_COLORS[ev.methods.index(method) % len(METHOD_COLORS)]
            if method in ev.methods
            else "k"
        )
        return {"color": color, "lw": 1.2, "ls": "-.", "alpha": 0.8}
    color, ls = BASELINE_STYLE.get(name, ("#555555", "--"))
    return {"color": color, "lw": 1.2, "ls": ls}


def curves_figure(ev: Evaluation, image: str) -> Figure:
    """Deletion / insertion (and ROAD) curves of every map on one image, AUC in the legend."""
    curves = [c for c in ev.curves if c.image == image]
    metrics = [
        m
        for m in ("deletion", "insertion", "road-morf", "road-lerf")
        if any(c.metric == m for c in curves)
    ]
    fig = _figure(4.2 * max(1, len(metrics)), 3.8)
    target = ev.targets.get(image)
    title = f"{image}" + (
        f"  ·  class {target[0]} {target[1]} (p={target[2]:.2f})" if target else ""
    )
    fig.suptitle(title, fontsize=11)
    for k, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), k + 1)
        for c in (c for c in curves if c.metric == metric):
            label = f"{c.map} ({'AUC' if metric in ('deletion', 'insertion') else 'mean'} {c.value:.3f})"
            ax.plot(c.fractions.numpy(), c.scores.numpy(), label=label, **_style(ev, c.map))
        ax.set_title(f"{metric} ({METRICS[metric].better} is better)", fontsize=10)
        ax.set_xlabel(
            "fraction of pixels " + ("inserted" if metric == "insertion" else "removed"), fontsize=9
        )
        ax.set_ylabel("p(class)", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def summary_figure(ev: Evaluation) -> Figure:
    """Method x metric means; colour = rank within the column (green best); red '!' = the
    method does not beat every baseline on that metric."""
    summary, marked = ev.summary(), _flagged(ev.flags)
    metrics = [m for m in ev.metrics if m in METRICS]
    names = ev.maps
    fig = _figure(1.5 + 1.25 * max(1, len(metrics)), 1.2 + 0.34 * len(names))
    ax = fig.add_subplot(1, 1, 1)
    goodness = np.full((len(names), len(metrics)), np.nan)
    for j, metric in enumerate(metrics):
        col = [summary.get(n, {}).get(metric, np.nan) for n in names]
        values = np.array(col, dtype=float)
        ok = ~np.isnan(values)
        if ok.sum() > 1 and np.ptp(values[ok]) > 0:
            scaled = (values - np.nanmin(values)) / np.ptp(values[ok])
            goodness[:, j] = scaled if METRICS[metric].better == "higher" else 1 - scaled
    ax.imshow(np.nan_to_num(goodness, nan=0.5), cmap="RdYlGn", vmin=-0.2, vmax=1.2, aspect="auto")
    for i, name in enumerate(names):
        for j, metric in enumerate(metrics):
            value = summary.get(name, {}).get(metric)
            flag = (name, metric) in marked
            ax.text(
                j,
                i,
                _fmt(value) + ("!" if flag else ""),
                ha="center",
                va="center",
                fontsize=8,
                color="#b42318" if flag else "black",
                fontweight="bold" if name in ev.methods else "normal",
            )
    ax.set_xticks(
        range(len(metrics)),
        [f"{m} {ARROW[METRICS[m].better]}" for m in metrics],
        rotation=30,
        ha="right",
        fontsize=8,
    )
    ax.set_yticks(range(len(names)), names, fontsize=8)
    if ev.methods and ev.baselines:
        ax.axhline(len(ev.methods) - 0.5, color="black", lw=1.5)
    ax.set_title(f"mean over {len(ev.images)} image(s); ! = no better than a baseline", fontsize=9)
    fig.tight_layout()
    return fig


def _mean_curves(results: Sequence[RandomizationResult]) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for method, measures in results[0].similarity.items():
        for measure in measures:
            stack = np.array([r.similarity[method][measure] for r in results], dtype=float)
            out.setdefault(method, {})[measure] = stack.mean(axis=0)
    return out


def randomization_curves_figure(ev: Evaluation, mode: str) -> Figure:
    """Similarity to the trained map at each step, one panel per measure, mean over images."""
    results = [r for r in ev.randomization if r.mode == mode]
    steps = results[0].steps
    curves = _mean_curves(results)
    measures = list(next(iter(curves.values())))
    fig = _figure(4.0 * len(measures), 4.2)
    fig.suptitle(
        f"{mode} randomization: similarity to the trained model's map "
        f"(mean over {len(results)} image(s))",
        fontsize=11,
    )
    for k, measure in enumerate(measures):
        ax = fig.add_subplot(1, len(measures), k + 1)
        for method, values in curves.items():
            ax.plot(
                range(len(steps)),
                values[measure],
                marker="o",
                ms=3,
                label=method,
                **_style(ev, method),
            )
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(range(len(steps)), steps, rotation=90, fontsize=6)
        ax.set_title(measure, fontsize=10)
        ax.set_ylim(-1.05 if "spearman" in measure else -0.1, 1.05)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=8)
            ax.set_ylabel("similarity", fontsize=9)
    fig.tight_layout()
    return fig


def randomization_maps_figure(result: RandomizationResult, columns: int | None = None) -> Figure:
    """Adebayo et al.'s figure: one row per method, one column per step (|map| scaled to
    [0, 1], clipped at the 99th percentile), the input first."""
    steps = list(range(len(result.steps)))
    if columns and len(steps) > columns:  # keep the first, the last, and evenly spaced ones
        picks = np.unique(np.linspace(0, len(steps) - 1, columns).round().astype(int))
        steps = [int(s) for s in picks]
    methods = list(result.maps)
    cell, top, left = 1.0, 1.2, 0.5
    width = left + 1.05 * cell * (len(steps) + 1)
    height = top + 1.05 * cell * len(methods)
    fig = _figure(width, height)
    fig.suptitle(
        f"{result.mode} randomization, {result.image} (class {result.target} "
        f"{result.target_name}): |map| per step, top layers first",
        fontsize=9,
    )
    grid = fig.add_gridspec(
        len(methods),
        len(steps) + 1,
        left=left / width,
        right=0.99,
        bottom=0.02,
        top=1 - top / height,
        wspace=0.05,
        hspace=0.05,
    )
    for row, method in enumerate(methods):
        ax = fig.add_subplot(grid[row, 0])
        if row == 0 and result.display is not None:
            ax.imshow(result.display.permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_title("input", fontsize=7)
        ax.set_ylabel(method, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(row == 0)
        for col, step in enumerate(steps):
            ax = fig.add_subplot(grid[row, col + 1])
            ax.imshow(unit_scale(result.maps[method][step]).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(result.steps[step], fontsize=6, rotation=45, ha="left", va="bottom")
    return fig


def figures(ev: Evaluation) -> dict[str, Figure]:
    """{file stem: Figure} for everything `save` writes."""
    out: dict[str, Figure] = {}
    if any(m in METRICS for m in ev.metrics) and ev.scores:
        out["summary"] = summary_figure(ev)
    for image in ev.images:
        if any(c.image == image for c in ev.curves):
            out[f"curves-{_slug(image)}"] = curves_figure(ev, image)
    for mode in RANDOMIZATION_MODES:
        results = [r for r in ev.randomization if r.mode == mode]
        if results:
            out[f"randomization-{mode}"] = randomization_curves_figure(ev, mode)
            for r in results:
                out[f"randomization-{mode}-maps-{_slug(r.image)}"] = randomization_maps_figure(r)
    return out


def _slug(text: str) -> str:
    text = text.removeprefix("sample:")
    text = Path(text).stem if ("/" in text or "\\" in text or "." in text) else text
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text) or "image"


def png_bytes(fig: Figure, dpi: int = 90) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=dpi, facecolor="white")
    return out.getvalue()


# ----------------------------------------------------------------------------- HTML

SECTION_CSS = """
.cnnvis-eval table.eval { border-collapse: collapse; font-size: 13px; margin: 8px 0 12px; }
.cnnvis-eval table.eval th, .cnnvis-eval table.eval td { padding: 3px 9px;
  border-bottom: 1px solid #dde1e8; text-align: right; font-variant-numeric: tabular-nums; }
.cnnvis-eval table.eval th:first-child, .cnnvis-eval table.eval td:first-child { text-align: left; }
.cnnvis-eval tr.baseline td { color: #5b6475; }
.cnnvis-eval tr.baseline td:first-child { padding-left: 22px; }
.cnnvis-eval td.flag { color: #b42318; font-weight: 600; }
.cnnvis-eval ul.flags li { color: #b42318; }
.cnnvis-eval figure img { max-width: 100%; height: auto; border: 1px solid #dde1e8; border-radius: 6px; }
.cnnvis-eval .sub { color: #5b6475; }
"""


def _summary_html(ev: Evaluation) -> str:
    summary, marked = ev.summary(), _flagged(ev.flags)
    metrics = [m for m in ev.metrics if m in METRICS]
    if not metrics:
        return ""
    head = "".join(
        f"<th title='{esc(METRICS[m].summary)}'>{esc(m)} {ARROW[METRICS[m].better]}</th>"
        for m in metrics
    )
    rows = []
    for name in ev.maps:
        cls = "method" if name in ev.methods else "baseline"
        cells = "".join(
            f"<td class='flag'>{_fmt(summary.get(name, {}).get(m))}!</td>"
            if (name, m) in marked
            else f"<td>{_fmt(summary.get(name, {}).get(m))}</td>"
            for m in metrics
        )
        rows.append(f"<tr class='{cls}'><td>{esc(name)}</td>{cells}</tr>")
    return f"<table class='eval'><tr><th>map</th>{head}</tr>{''.join(rows)}</table>"


def rendered(ev: Evaluation, dpi: int = 90) -> dict[str, bytes]:
    """Every figure as PNG bytes (each figure is drawn once and released)."""
    out = {}
    for name, fig in figures(ev).items():
        out[name] = png_bytes(fig, dpi)
        fig.clear()
    return out


def html_section(ev: Evaluation, pngs: dict[str, bytes] | None = None) -> str:
    """A self-contained <section> (scoped CSS, images as data URIs) for an HTML report;
    `pngs` are the figures already rendered (see `rendered`), drawn here if not given."""
    pngs = rendered(ev) if pngs is None else pngs
    parts = [
        f"<section class='cnnvis-eval' id='evaluation'><style>{SECTION_CSS}</style>",
        "<h2>Evaluation</h2>",
        f"<p class='sub'>{esc(_header(ev, ', '.join(ev.methods)))}</p>",
        _summary_html(ev),
    ]
    flags = ev.flags
    if flags:
        parts.append(f"<p><b>! {esc(_flag_heading(flags))}:</b></p><ul class='flags'>")
        parts += [f"<li>{esc(line.strip())}</li>" for line in _flag_lines(flags)]
        parts.append("</ul>")
    if ev.notes:
        parts.append(
            "<ul class='notes'>" + "".join(f"<li>{esc(n)}</li>" for n in ev.notes) + "</ul>"
        )
    for name, png in pngs.items():
        parts.append(
            f"<figure><img src='{data_uri(png)}' alt='{esc(name)}'>"
            f"<figcaption>{esc(name)}</figcaption></figure>"
        )
    protocol = json.dumps(ev.protocol, default=str)
    parts.append(f"<details><summary>protocol</summary><pre>{esc(protocol)}</pre></details>")
    parts.append("</section>")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- files


def save(ev: Evaluation, folder: Path) -> dict[str, Path]:
    """Write scores.csv, summary.csv, curves.csv, randomization.csv, one PNG per figure,
    evaluation.json and evaluation.html (a full page around `html_section`)."""
    from ..html import page

    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def put(name: str, text: str) -> None:
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written[name] = path

    if ev.scores:
        put("scores.csv", scores_csv(ev))
        put("summary.csv", summary_csv(ev))
    if ev.curves:
        put("curves.csv", curves_csv(ev))
    if ev.randomization:
        put("randomization.csv", randomization_csv(ev))
    pngs = rendered(ev)
    for name, png in pngs.items():
        path = folder / f"{name}.png"
        path.write_bytes(png)
        written[path.name] = path
    put("evaluation.json", json.dumps(to_json(ev), indent=2, default=str))
    put("evaluation.html", page(f"cnnvis evaluate — {ev.model}", html_section(ev, pngs)))
    return written


def to_json(ev: Evaluation) -> dict[str, Any]:
    """A machine-readable summary: protocol, means, flags, notes, targets, timings."""
    return {
        "model": ev.model,
        "images": ev.images,
        "methods": ev.methods,
        "baselines": ev.baselines,
        "metrics": ev.metrics,
        "targets": {
            k: {"index": v[0], "name": v[1], "probability": v[2]} for k, v in ev.targets.items()
        },
        "summary": ev.summary(),
        "flags": [
            {
                "method": f.method,
                "metric": f.metric,
                "baseline": f.baseline,
                "value": f.value,
                "baseline_value": f.baseline_value,
                "text": str(f),
            }
            for f in ev.flags
        ],
        "randomization": [
            {"image": r.image, "mode": r.mode, "steps": r.steps, "similarity": r.similarity}
            for r in ev.randomization
        ],
        "protocol": ev.protocol,
        "notes": ev.notes,
        "failures": ev.failures,
        "forwards": ev.forwards,
        "seconds": ev.seconds,
    }
