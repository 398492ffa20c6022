"""An evaluation as an HTML <section> for a report: the summary table (mean ± CI), the
verdicts, the flags, the notes and the figures as data URIs, with its own scoped CSS."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ..html import data_uri, esc
from .figures import rendered
from .metrics import METRICS
from .tables import ARROW, STATISTICS, cell, header_line, marked_pairs, verdict_lines

if TYPE_CHECKING:
    from .result import Evaluation

SECTION_CSS = """
.cnnvis-eval table.eval { border-collapse: collapse; font-size: 13px; margin: 8px 0 12px; }
.cnnvis-eval table.eval th, .cnnvis-eval table.eval td { padding: 3px 9px;
  border-bottom: 1px solid #dde1e8; text-align: right; font-variant-numeric: tabular-nums; }
.cnnvis-eval table.eval th:first-child, .cnnvis-eval table.eval td:first-child { text-align: left; }
.cnnvis-eval tr.baseline td { color: #5b6475; }
.cnnvis-eval tr.baseline td:first-child { padding-left: 22px; }
.cnnvis-eval td.worse { color: #b42318; font-weight: 600; }
.cnnvis-eval td.better { color: #067647; font-weight: 600; }
.cnnvis-eval ul.flags li { color: #b42318; }
.cnnvis-eval figure img { max-width: 100%; height: auto; border: 1px solid #dde1e8; border-radius: 6px; }
.cnnvis-eval .sub { color: #5b6475; }
"""


def _summary_html(ev: Evaluation) -> str:
    marks = marked_pairs(ev.comparisons())
    metrics = [m for m in ev.metrics if m in METRICS]
    if not metrics:
        return ""
    head = "".join(
        f"<th title='{esc(METRICS[m].summary)}'>{esc(m)} {ARROW[METRICS[m].better]}</th>"
        for m in metrics
    )
    style = {"!": " class='worse'", "+": " class='better'"}
    rows = []
    for name in ev.maps:
        cls = "method" if name in ev.methods else "baseline"
        cells = "".join(
            f"<td{style.get(marks.get((name, m), ''), '')}>"
            f"{esc(cell(ev.interval(name, m)))}{marks.get((name, m), '')}</td>"
            for m in metrics
        )
        rows.append(f"<tr class='{cls}'><td>{esc(name)}</td>{cells}</tr>")
    return (
        f"<table class='eval'><tr><th>map</th>{head}</tr>{''.join(rows)}</table>"
        "<p class='sub'>mean ± half the 95% bootstrap interval over the images; ! worse than a "
        "baseline, + better than every baseline (paired tests)</p>"
    )


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
    comparisons = ev.comparisons()
    note = ev.verdict_note(comparisons)
    if note:
        parts.append(f"<p><b>{esc(note)}</b></p>")
    lines = verdict_lines(comparisons)
    if lines and (not note or any(c.verdict != "no evidence" for c in comparisons)):
        parts.append(f"<p><b>verdicts</b> ({esc(STATISTICS)}):</p><ul class='verdicts'>")
        parts += [f"<li>{esc(line.strip())}</li>" for line in lines]
        parts.append("</ul>")
    flags = ev.flags
    if flags:
        parts.append("<p><b>! map ignores randomized weights:</b></p><ul class='flags'>")
        parts += [f"<li>{esc(str(f))}</li>" for f in flags]
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
