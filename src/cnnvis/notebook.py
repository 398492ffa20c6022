"""Jupyter displays: what `Explanation`, `Sweep` and `Prediction` show inline, and `show()`.

Results display as the tutorial's panels: `_repr_png_` is the figure of the first image,
`_repr_html_` adds the explained class and the predictions table (and, for a batch, each
image's figure). The PNG is drawn once and shared by both, since Jupyter asks for every format.
`show()` draws the same figure with matplotlib's pyplot (inline in a notebook, a window from a
script). `predictions_table(cnnvis.classify(...))` shows predictions as a table.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

from .explanation import Explanation, Prediction, Sweep
from .html import data_uri, esc
from .html import predictions_table as _table_html

MAX_FIGURES = 4  # images of a batch drawn in one HTML display

_STYLE = (
    "<style>.cnnvis table.preds{border-collapse:collapse;font-size:13px;margin:4px 0 8px}"
    ".cnnvis table.preds th,.cnnvis table.preds td{padding:3px 10px;text-align:left;"
    "border-bottom:1px solid #dde1e8}.cnnvis td.num,.cnnvis th.num{text-align:right}"
    ".cnnvis tr.target td{font-weight:600;background:#eef4ff}"
    ".cnnvis .track{display:inline-block;width:100px;height:8px;background:#f0f1f4}"
    ".cnnvis .bar{display:block;height:8px;background:#2f6fde}"
    ".cnnvis img{max-width:100%;height:auto}.cnnvis .sub{color:#5b6475;margin:2px 0 6px}</style>"
)

_cache: list[tuple[weakref.ref, tuple, bytes]] = []


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """A figure as PNG bytes (white background); the figure is cleared afterwards."""
    from . import render

    png = render.figure_png(fig, dpi)
    fig.clear()
    return png


def _cached_png(obj: Any, key: tuple, draw) -> bytes:
    """`draw()`'s PNG bytes, reused while `obj` and `key` are the same (the last few only)."""
    for ref, k, png in _cache:
        if ref() is obj and k == key:
            return png
    png = figure_png(draw())
    _cache.append((weakref.ref(obj), key, png))
    del _cache[:-8]
    return png


def _version(tensor: Any) -> tuple:
    return (id(tensor), getattr(tensor, "_version", 0), tuple(tensor.shape))


# ----------------------------------------------------------------------------- Explanation


def explanation_png(e: Explanation, index: int = 0, cmap: str = "jet") -> bytes:
    """The tutorial's panel of image `index` as PNG bytes."""
    from .render import explanation_figure

    key = ("explanation", index, cmap, _version(e.map))
    return _cached_png(e, key, lambda: explanation_figure(e, index, cmap))


def explanation_html(e: Explanation, cmap: str = "jet") -> str:
    """Each image's explained class, predictions and panel (the first MAX_FIGURES images)."""
    where = f" at <code>{esc(e.layer)}</code>" if e.layer else ""
    parts = [
        _STYLE,
        "<div class='cnnvis'>",
        f"<b>{esc(e.method)}</b>{where} · {esc(e.model)} · {len(e)} image"
        + ("s" if len(e) != 1 else ""),
    ]
    for i in range(min(len(e), MAX_FIGURES)):
        parts.append(
            f"<p class='sub'>image {i}: explaining <b>{esc(e.target_names[i])}</b> "
            f"(class {e.targets[i]}, p = {e.probabilities[i]:.3f})</p>"
        )
        if e.predictions:
            parts.append(_table_html(e.predictions[i], e.targets[i]))
        parts.append(f"<img src='{data_uri(explanation_png(e, i, cmap))}'>")
    if len(e) > MAX_FIGURES:
        parts.append(
            f"<p class='sub'>… {len(e) - MAX_FIGURES} more; display one with e[i] or e.show(i)</p>"
        )
    parts.append("</div>")
    return "".join(parts)


# ----------------------------------------------------------------------------- Sweep


def sweep_png(s: Sweep, index: int = 0, cmap: str = "jet") -> bytes:
    """The per-layer grid of image `index` as PNG bytes."""
    from .render import sweep_figure

    key = ("sweep", index, cmap, tuple(_version(e.map) for e in s.explanations.values()))
    return _cached_png(s, key, lambda: sweep_figure(s, index, cmap))


def sweep_html(s: Sweep, cmap: str = "jet") -> str:
    """The sweep's method, layer count, explained class and grid."""
    first = next(iter(s.explanations.values()), None)
    if first is None:
        return f"<div class='cnnvis'>{esc(s.method)}: an empty sweep</div>"
    return (
        f"{_STYLE}<div class='cnnvis'><b>{esc(s.method)}</b> at {len(s)} layers · "
        f"{esc(first.model)} · explaining <b>{esc(first.target_names[0])}</b> "
        f"(class {first.targets[0]}, p = {first.probabilities[0]:.3f})"
        f"<br><img src='{data_uri(sweep_png(s, 0, cmap))}'></div>"
    )


# ----------------------------------------------------------------------------- predictions


class Predictions(list):
    """A list of `Prediction` that Jupyter shows as a table (a list of lists, one per image)."""

    def _repr_html_(self) -> str:
        rows = list(self)
        if rows and not isinstance(rows[0], Prediction):
            tables = [
                f"<p class='sub'>image {i}</p>{_table_html(list(r))}" for i, r in enumerate(rows)
            ]
            return f"{_STYLE}<div class='cnnvis'>{''.join(tables)}</div>"
        return f"{_STYLE}<div class='cnnvis'>{_table_html(rows)}</div>"


def predictions_table(
    predictions: Sequence[Prediction] | Sequence[Sequence[Prediction]],
) -> Predictions:
    """`cnnvis.classify`'s result as a list that displays as a table in Jupyter."""
    return Predictions(predictions)


def prediction_html(p: Prediction) -> str:
    """One prediction as a one-row table."""
    return f"{_STYLE}<div class='cnnvis'>{_table_html([p])}</div>"


# ----------------------------------------------------------------------------- show


def show_figure(fig: Figure) -> None:
    """Hand a figure to pyplot and show it: inline in Jupyter, a window from a script."""
    import matplotlib.pyplot as plt

    plt.figure(fig)
    plt.show()
