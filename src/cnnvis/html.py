"""HTML primitives: escaping, data URIs, relative links, the predictions table, a whole page.

Small builders that the run report (`cnnvis.run_report`), the evaluation page and the notebook
displays share. Pages are self-contained: inline CSS, images as data URIs, no network.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #dde1e8; --soft: #f5f6f9; --accent: #2f6fde;
        --bad: #b42318; --bad-bg: #fef3f2; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: #fff; }
main { max-width: 1440px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 0; word-break: break-all; }
h3 { font-size: 15px; margin: 20px 0 8px; color: var(--muted); font-weight: 600; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code { font: 13px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
       background: var(--soft); padding: 1px 5px; border-radius: 4px; }
.sub { color: var(--muted); margin: 0 0 20px; }
.run { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0 0 24px;
       padding: 14px 18px; background: var(--soft); border-radius: 8px; }
.run dt { color: var(--muted); }
.run dd { margin: 0; word-break: break-word; }
nav { margin: 0 0 24px; }
nav a { display: inline-block; margin: 0 6px 6px 0; padding: 3px 10px; border: 1px solid var(--line);
        border-radius: 999px; font-size: 13px; }
section.image { border: 1px solid var(--line); border-radius: 10px; padding: 20px 24px;
                margin: 0 0 28px; }
.head { display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; margin: 0 0 8px; }
.head img.thumb { width: 160px; height: 160px; object-fit: cover; border-radius: 6px;
                  border: 1px solid var(--line); }
.head .what { flex: 1 1 420px; min-width: 320px; }
.verdict { margin: 6px 0 12px; color: var(--muted); }
.verdict b { color: var(--ink); }
table.preds { border-collapse: collapse; font-size: 14px; min-width: 420px; }
table.preds th, table.preds td { padding: 4px 10px; border-bottom: 1px solid var(--line);
                                 text-align: left; }
table.preds th { color: var(--muted); font-weight: 600; }
table.preds td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.preds tr.target td { background: #eef4ff; font-weight: 600; }
table.preds th.num { text-align: right; }
.track { display: inline-block; width: 120px; height: 9px; background: var(--soft);
         border-radius: 2px; vertical-align: middle; }
.bar { display: block; height: 9px; background: var(--accent); border-radius: 2px; opacity: .85; }
figure { margin: 0 0 8px; }
figure img.full { display: block; max-width: 100%; height: auto; border: 1px solid var(--line);
                  border-radius: 6px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
details { margin: 20px 0 0; }
summary { cursor: pointer; font-size: 15px; font-weight: 600; color: var(--muted);
          margin: 0 0 10px; }
.maps { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 14px 16px;
        max-width: 1040px; }
.maps.sweep { grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); max-width: none; }
.maps figure img { width: 100%; height: auto; image-rendering: pixelated; border-radius: 4px;
                   border: 1px solid var(--line); }
.files { font-size: 13px; color: var(--muted); margin-top: 12px; }
.files a { margin-right: 12px; }
.failed { border: 1px solid #fda29b; background: var(--bad-bg); border-radius: 10px;
          padding: 14px 20px; margin: 0 0 28px; }
.failed h2 { color: var(--bad); font-size: 17px; margin: 0 0 6px; }
.failed li { margin: 2px 0; }
footer { color: var(--muted); font-size: 12px; border-top: 1px solid var(--line);
         padding-top: 12px; margin-top: 12px; }
"""


class PredictionLike(Protocol):
    """What a predictions table reads of a prediction (`cnnvis.Prediction` has it)."""

    @property
    def index(self) -> int: ...

    @property
    def name(self) -> str: ...

    @property
    def probability(self) -> float: ...


def esc(value: object) -> str:
    """HTML-escape any value's text."""
    return html.escape(str(value), quote=True)


def data_uri(data: bytes | Path, mime: str = "image/png") -> str:
    """A base64 `data:` URI of bytes or of a file's contents."""
    raw = data.read_bytes() if isinstance(data, Path) else data
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"


def href(path: str | Path) -> str:
    """A relative link to a file (each path segment URL-quoted, '/' as separator)."""
    return quote(Path(path).as_posix(), safe="/")


def predictions_table(
    predictions: Sequence[PredictionLike | Mapping[str, Any]],
    target: int | None = None,
) -> str:
    """The top-k predictions as an HTML table with probability bars; `target`'s row marked."""
    rows = []
    for rank, p in enumerate(predictions, 1):
        index, name, prob = _fields(p)
        mark = ' class="target"' if index == target else ""
        width = max(1, round(120 * min(max(prob, 0.0), 1.0)))
        rows.append(
            f"<tr{mark}><td class='num'>{rank}</td><td>{esc(name)}</td>"
            f"<td class='num'>{index}</td><td class='num'>{prob:.1%}</td>"
            f"<td><span class='track'><span class='bar' style='width:{width}px'></span></span>"
            "</td></tr>"
        )
    head = (
        "<tr><th>#</th><th>class</th><th class='num'>index</th>"
        "<th class='num'>probability</th><th></th></tr>"
    )
    return f"<table class='preds'>{head}{''.join(rows)}</table>"


def _fields(p: PredictionLike | Mapping[str, Any]) -> tuple[int, str, float]:
    if isinstance(p, Mapping):
        return int(p["index"]), str(p["name"]), float(p["probability"])
    return p.index, p.name, p.probability


def page(title: str, body: str) -> str:
    """A complete HTML document with the report's inline stylesheet."""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )
