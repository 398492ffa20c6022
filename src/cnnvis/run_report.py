"""The run report: one self-contained page (inline CSS, images as data URIs, no network).

`write_report(out, run, entries)` writes `out/report.html` from what a `cnnvis explain` or
`cnnvis sweep` run wrote: one entry per image (its manifest, with the files beside it) and the
images that failed. The page opens from disk offline; links to the files next to it (the raw
maps, the manifests, the full-size PNGs) are relative, so the folder can be moved as a whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .html import data_uri, esc, href, page, predictions_table


def write_report(
    out: Path,
    run: Mapping[str, Any],
    entries: Sequence[Mapping[str, Any]],
    failed: Sequence[Mapping[str, str]] = (),
    evaluation: str | None = None,
) -> Path:
    """Write `out/report.html` for one run and return its path.

    `run`: what the whole run shares (command, model, weights, device, methods, layer, target,
    versions, timings, argv). `entries`: one manifest per image, each with `folder` (relative
    to `out`) and the file names in it. `failed`: {"source", "error"} of images not processed.
    `evaluation`: the evaluation section (`cnnvis.evaluate(...).html()`), put after the images
    and linked from the navigation.
    """
    out.mkdir(parents=True, exist_ok=True)
    title = f"cnnvis {run.get('command', 'explain')} — {_count(len(entries), 'image')}"
    parts = [
        f"<h1>cnnvis {esc(run.get('command', 'explain'))} report</h1>",
        f"<p class='sub'>{esc(_subtitle(run, entries, failed))}</p>",
        _run_table(run),
    ]
    if len(entries) > 1 or (entries and (failed or evaluation)):
        parts.append(_nav(entries, failed, evaluation is not None))
    if failed:
        parts.append(_failed(failed))
    parts += [_entry(out, entry, i) for i, entry in enumerate(entries)]
    if evaluation is not None:
        parts.append(evaluation)
    parts.append(_footer(run))
    path = out / "report.html"
    path.write_text(page(title, "\n".join(parts)), encoding="utf-8")
    return path


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _subtitle(
    run: Mapping[str, Any], entries: Sequence[Mapping[str, Any]], failed: Sequence[Any]
) -> str:
    when = run.get("started") or datetime.now().isoformat(timespec="seconds")
    when = str(when).replace("T", " ")
    text = f"{_count(len(entries), 'image')} explained"
    if failed:
        text += f", {len(failed)} failed"
    return f"{text} · {when}"


def _run_table(run: Mapping[str, Any]) -> str:
    rows = [
        ("model", run.get("model")),
        ("weights", run.get("weights") or "none (random init)"),
        ("device", run.get("device")),
        ("methods", ", ".join(run.get("methods", [])) or None),
        ("layer", run.get("layer")),
        ("target", run.get("target")),
        ("seed", run.get("seed")),
        ("time", _seconds(run.get("timings", {}).get("total"))),
        ("command", run.get("argv")),
    ]
    cells = "".join(
        f"<dt>{esc(k)}</dt><dd>{_value(k, v)}</dd>" for k, v in rows if v not in (None, "")
    )
    return f"<dl class='run'>{cells}</dl>"


def _value(key: str, value: Any) -> str:
    if key == "command" and isinstance(value, list | tuple):
        return f"<code>{esc(' '.join(['cnnvis', *map(str, value)]))}</code>"
    return esc(value)


def _seconds(value: Any) -> str | None:
    return None if value is None else f"{float(value):.2f} s"


def _anchor(i: int) -> str:
    return f"image-{i + 1}"


def _nav(
    entries: Sequence[Mapping[str, Any]], failed: Sequence[Any], evaluation: bool = False
) -> str:
    links = [f"<a href='#{_anchor(i)}'>{esc(e.get('source'))}</a>" for i, e in enumerate(entries)]
    if failed:
        links.append("<a href='#failed'>failed</a>")
    if evaluation:
        links.append("<a href='#evaluation'>evaluation</a>")
    return f"<nav>{''.join(links)}</nav>"


def _failed(failed: Sequence[Mapping[str, str]]) -> str:
    items = "".join(
        f"<li><code>{esc(f.get('source'))}</code>: {esc(f.get('error'))}</li>" for f in failed
    )
    title = f"{_count(len(failed), 'image')} could not be processed"
    return f"<div class='failed' id='failed'><h2>{esc(title)}</h2><ul>{items}</ul></div>"


def _entry(out: Path, entry: Mapping[str, Any], i: int) -> str:
    """One image's section: input, predictions, figures, every map, links to the files."""
    folder = Path(entry.get("folder", "."))
    files = entry.get("files", {})
    target = entry.get("target", {})
    parts = [f"<section class='image' id='{_anchor(i)}'>", "<div class='head'>"]
    if files.get("input"):
        parts.append(_img(out, folder / files["input"], "input", "thumb"))
    verdict = (
        f"explaining <b>{esc(target.get('name'))}</b> (class {esc(target.get('index'))}, "
        f"p = {float(target.get('probability', 0.0)):.3f})"
    )
    parts += [
        "<div class='what'>",
        f"<h2>{esc(entry.get('source'))}</h2>",
        f"<p class='verdict'>{verdict}</p>",
    ]
    if entry.get("predictions"):
        parts.append(predictions_table(entry["predictions"], target.get("index")))
    parts += ["</div></div>"]
    for key, caption in _FIGURES:
        if files.get(key):
            parts.append(f"<h3>{esc(caption)}</h3>")
            parts.append(_figure(out, folder / files[key], caption))
    maps = [m for m in entry.get("maps", []) if m.get("png")]
    if maps:
        is_sweep = bool(files.get("sweep"))
        what = "each layer's map" if is_sweep else "each map"
        parts.append(f"<details{'' if is_sweep else ' open'}>")
        parts.append(f"<summary>{what} at the input's resolution ({len(maps)})</summary>")
        parts.append(f"<div class='maps{' sweep' if is_sweep else ''}'>")
        parts += [tile for m in maps for tile in _map_tiles(out, folder, m)]
        parts.append("</div></details>")
    parts.append(_file_links(folder, files))
    parts.append("</section>")
    return "\n".join(parts)


_FIGURES = (
    ("figure", "the tutorial's panel: input, CAMs over it, pixel maps as all / pos / neg / gray"),
    ("comparison", "methods side by side"),
    ("sweep", "one panel per layer: the layer's name and output shape above its map"),
)


# PNGs larger than this are embedded as a JPEG thumbnail (its link opens the full PNG), so a
# sweep over many layers gives a report of a few MB, not tens
EMBED_MAX_BYTES = 200_000
THUMB_MAX_SIDE = 900
THUMB_QUALITY = 80


def _img(out: Path, path: Path, alt: str, cls: str) -> str:
    source = out / path
    if not source.is_file():
        return f"<p class='files'>missing: {esc(path)}</p>"
    return (
        f"<a href='{href(path)}'><img class='{cls}' alt='{esc(alt)}' src='{_embedded(source)}'></a>"
    )


def _embedded(source: Path) -> str:
    """A picture as a data URI: the PNG itself, or a JPEG thumbnail of a large one."""
    if source.stat().st_size <= EMBED_MAX_BYTES:
        return data_uri(source)
    import io

    from PIL import Image

    with Image.open(source) as image:  # a PNG cnnvis wrote itself
        thumb = image.convert("RGB")
    thumb.thumbnail((THUMB_MAX_SIDE, THUMB_MAX_SIDE))
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=THUMB_QUALITY)
    return data_uri(buffer.getvalue(), "image/jpeg")


def _figure(out: Path, path: Path, caption: str) -> str:
    return f"<figure>{_img(out, path, caption, 'full')}</figure>"


def _map_tiles(out: Path, folder: Path, m: Mapping[str, Any]) -> list[str]:
    """A map's main display and its signed raw map, each as a captioned tile."""
    name = esc(m.get("method"))
    if m.get("layer"):
        name += f" @ <code>{esc(m['layer'])}</code>"
    tiles = [(m["png"], m.get("display", ""))]
    if m.get("signed_png"):
        tiles.append((m["signed_png"], "signed: blue < 0 < red"))
    return [
        f"<figure>{_img(out, folder / png, str(m.get('method')), 'map')}"
        f"<figcaption>{name}<br>{esc(what)}</figcaption></figure>"
        for png, what in tiles
    ]


def _file_links(folder: Path, files: Mapping[str, Any]) -> str:
    links = [
        f"<a href='{href(folder / name)}'>{esc(name)}</a>"
        for key, name in files.items()
        if key in ("maps", "manifest") and name
    ]
    folder_link = f"<a href='{href(folder)}/'>{esc(folder.as_posix())}/</a>"
    return f"<p class='files'>files: {folder_link} {''.join(links)}</p>"


def _footer(run: Mapping[str, Any]) -> str:
    versions: Iterable[tuple[str, Any]] = (run.get("versions") or {}).items()
    text = " · ".join(f"{k} {v}" for k, v in versions)
    return f"<footer>{esc(text)}</footer>"
