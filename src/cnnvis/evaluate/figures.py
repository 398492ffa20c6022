"""An evaluation's matplotlib Figures (never pyplot): deletion/insertion curves per image, the
summary grid, the randomization curves and maps; and the figures drawn as PNG bytes."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .metrics import METRICS, RANDOMIZATION_MODES
from .similarity import unit_scale
from .tables import ARROW, fmt_value, marked_pairs

if TYPE_CHECKING:
    from .result import Evaluation
    from .sanity import RandomizationResult

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


def _figure(width: float, height: float) -> Figure:
    """An empty Figure (inches, 100 dpi) on its own Agg canvas, never pyplot."""
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _style(ev: Evaluation, name: str) -> dict[str, Any]:
    """Line style of a map: a method's colour, its reversed order dash-dotted, baselines dashed."""
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


def _legend_below(ax: Any, fontsize: float) -> None:
    """The axes' legend under its x label, outside the plot, so it never covers a curve."""
    entries = len(ax.get_legend_handles_labels()[1])
    ax.legend(
        fontsize=fontsize,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.2),
        ncol=2 if entries > 4 else 1,
        frameon=False,
    )


def _legend_rows(entries: int) -> int:
    """Rows a legend of `entries` takes under its axes (see `_legend_below`)."""
    return -(-entries // 2) if entries > 4 else entries


def curves_figure(ev: Evaluation, image: str) -> Figure:
    """Deletion / insertion (and ROAD) curves of every map on one image, AUC in the legend
    (below each plot, off the curves)."""
    curves = [c for c in ev.curves if c.image == image]
    metrics = [
        m
        for m in ("deletion", "insertion", "road-morf", "road-lerf")
        if any(c.metric == m for c in curves)
    ]
    per_metric = max((sum(c.metric == m for c in curves) for m in metrics), default=1)
    fig = _figure(4.2 * max(1, len(metrics)), 3.8 + 0.16 * _legend_rows(per_metric))
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
        _legend_below(ax, 7)
    fig.tight_layout()
    return fig


def summary_figure(ev: Evaluation) -> Figure:
    """Method x metric means; colour = rank within the column (green best); red '!' = the
    method is worse than a baseline on that metric, '+' better than all (paired tests)."""
    summary, marks = ev.summary(), marked_pairs(ev.comparisons())
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
            mark = marks.get((name, metric), "")
            ax.text(
                j,
                i,
                fmt_value(value) + mark,
                ha="center",
                va="center",
                fontsize=8,
                color={"!": "#b42318", "+": "#067647"}.get(mark, "black"),
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
    ax.set_title(
        f"mean over {len(ev.images)} image(s); ! worse than a baseline, + better than all "
        "(paired tests)",
        fontsize=9,
    )
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
    fig = _figure(4.0 * len(measures), 4.2 + 0.18 * _legend_rows(len(curves)))
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
            _legend_below(ax, 8)
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
    """An image name as a file-name part: "sample:cat" -> "cat", "a/b.jpg" -> "b"."""
    text = text.removeprefix("sample:")
    text = Path(text).stem if ("/" in text or "\\" in text or "." in text) else text
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text) or "image"


def png_bytes(fig: Figure, dpi: int = 90) -> bytes:
    """The figure drawn as PNG bytes on a white background."""
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=dpi, facecolor="white")
    return out.getvalue()


def rendered(ev: Evaluation, dpi: int = 90) -> dict[str, bytes]:
    """Every figure as PNG bytes (each figure is drawn once and released)."""
    out = {}
    for name, fig in figures(ev).items():
        out[name] = png_bytes(fig, dpi)
        fig.clear()
    return out
