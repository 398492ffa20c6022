"""An evaluation as an HTML <section> for a report: the summary table, the flags, the notes and
the figures as data URIs, with its own scoped CSS."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ..html import data_uri, esc
from .figures import rendered
from .metrics import METRICS
from .tables import ARROW, flag_heading, flag_lines, flagged_pairs, fmt_value, header_line

if TYPE_CHECKING:
    from .result import Evaluation

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
    summary, marked = ev.summary(), flagged_pairs(ev.flags)
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
            f"<td class='flag'>{fmt_value(summary.get(name, {}).get(m))}!</td>"
            if (name, m) in marked
            else f"<td>{fmt_value(summary.get(name, {}).get(m))}</td>"
            for m in metrics
        )
        rows.append(f"<tr class='{cls}'><td>{esc(name)}</td>{cells}</tr>")
    return f"<table class='eval'><tr><th>map</th>{head}</tr>{''.join(rows)}</table>"


def html_section(ev: Evaluation, pngs: dict[str, bytes] | None = None) -> str:
    """A self-contained <section> (scoped CSS, images as data URIs) for an HTML report;
    `pngs` are the figures already rendered (see `rendered`), drawn here if not given."""
    pngs = rendered(ev) if pngs is None else pngs
    parts = [
        f"<section class='cnnvis-eval' id='evaluation'><style>{SECTION_CSS}</style>",
        "<h2>Evaluation</h2>",
        f"<p class='sub'>{esc(header_line(ev, ', '.join(ev.methods)))}</p>",
        _summary_html(ev),
    ]
    flags = ev.flags
    if flags:
        parts.append(f"<p><b>! {esc(flag_heading(flags))}:</b></p><ul class='flags'>")
        parts += [f"<li>{esc(line.strip())}</li>" for line in flag_lines(flags)]
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
