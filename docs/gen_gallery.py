"""The gallery: every registered method x the offline model(s) x three sample photos, drawn as
cnnvis draws them, with an index.html to look at them all (`make gallery`).

python docs/gen_gallery.py                       # test-artifacts/gallery/index.html
python docs/gen_gallery.py --reuse               # redraw from the maps computed last time
python docs/gen_gallery.py --photos cat --methods grad-cam,rise
python docs/gen_gallery.py --site --reuse        # the site's gallery: docs/gallery/ (committed)

`--site` writes the documentation site's gallery instead: one small JPEG per method, model and
photo in docs/gallery/ (committed, so the site builds in seconds) and docs/gallery/index.md,
each picture with the exact call that made it; tests/docs re-renders one and compares.

The maps are computed once per model and photo and kept in `maps/` (a cache of this script's
own results, read back with `torch.load(weights_only=False)`), so a change to the display is
redrawn in seconds with --reuse. The folder is git-ignored: it is for looking, not for shipping.
"""

from __future__ import annotations

import argparse
import html
import logging
import time
from pathlib import Path
from typing import Any

import torch

import cnnvis
from cnnvis import render
from cnnvis.explanation import Explanation

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "test-artifacts" / "gallery"
PHOTOS = ("cat", "coffee", "rocket")
MODELS = ("default",)
SITE_MODELS = (
    "default",
    "offline:mobilenet_v2",
    "offline:efficientnet_lite1",
    "offline:efficientnet_lite2",
)
SITE_ONE_PHOTO = ("offline:efficientnet_lite1", "offline:efficientnet_lite2")  # the cat only
FEATURE_CLASS = 285  # Egyptian cat: what the feature visualization makes the model see
SITE = ROOT / "docs" / "gallery"
SITE_DPI = 60  # small pictures: the committed gallery stays about a megabyte
SITE_QUALITY = 80
TUTORIAL = ("gradient", "guided-backprop", "grad-cam", "guided-grad-cam")
log = logging.getLogger("gallery")


def compute(model: str, photo: str, methods: list[str], cache: Path, reuse: bool) -> list:
    """Every method's explanation of one photo, in the registry's order. With `reuse`, the
    many-pass methods' maps come from the cache of an earlier run; the others are recomputed
    (a second or two), so their notes follow the current code."""
    cached: dict[str, Explanation] = {}
    if reuse and cache.is_file():
        cached = {e.method: e for e in torch.load(cache, weights_only=False)}
    slow = {m for m in methods if cnnvis.get_method(m).many_passes}
    todo = [m for m in methods if m not in cached or m not in slow]
    lm = cnnvis.load_model(model)
    failures: dict = {}
    start = time.perf_counter()
    results = cnnvis.explain_many(lm, f"sample:{photo}", todo, failures=failures)
    log.info("%s x %s: %d maps in %.0f s", model, photo, len(results), time.perf_counter() - start)
    for name, error in failures.items():
        log.warning("%s on %s: %s", name, photo, error)
    fresh = {e.method: e for e in results.values()}
    if todo:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(list({**cached, **fresh}.values()), cache)
    found = {**cached, **fresh}
    return [found[m] for m in methods if m in found]


def random_weights_figure(photo: str, folder: Path) -> str:
    """The tutorial's figure of the default architecture with random weights (its title says so)."""
    lm = cnnvis.load_model("default", weights=None)
    results = cnnvis.explain_many(lm, f"sample:{photo}", ["gradient", "grad-cam"])
    fig = render.explanation_figure(list(results.values()))
    return render.save_figure(fig, folder / "random-weights.png").name


def draw(explanations: list[Explanation], folder: Path) -> dict[str, str]:
    """The tutorial figure, the comparison and one figure per method; {label: file name}."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    tutorial = [e for e in explanations if e.method in TUTORIAL]
    if tutorial:
        files["tutorial"] = render.save_figure(
            render.explanation_figure(tutorial), folder / "tutorial.png"
        ).name
    files["comparison"] = render.save_figure(
        render.comparison_figure(explanations), folder / "comparison.png"
    ).name
    for e in explanations:
        path = folder / f"{e.method}.png"
        files[e.method] = render.save_figure(render.explanation_figure([e]), path).name
    return files


def site_picture(e: Explanation, path: Path) -> str:
    """One method's figure as a small JPEG for the site's gallery; its file name."""
    return site_jpeg(render.explanation_figure([e]), path)


def site_jpeg(fig: Any, path: Path) -> str:
    """A matplotlib figure as a small JPEG of the site's gallery; its file name."""
    from io import BytesIO

    from PIL import Image

    png = render.figure_png(fig, SITE_DPI)
    fig.clear()
    Image.open(BytesIO(png)).convert("RGB").save(path, quality=SITE_QUALITY, optimize=True)
    return path.name


def site_call(model: str, photo: str, method: str) -> str:
    """The exact call that makes a gallery picture."""
    load = f'cnnvis.load_model("{model}")'
    if method == "sweep":
        return f'cnnvis.sweep({load}, "sample:{photo}", method="grad-cam", layers="all").figure()'
    if method == "evaluation":
        return (
            f'ev = cnnvis.evaluate({load}, "sample:{photo}", ["grad-cam", "gradient"])\n'
            f'ev.figures()["curves-{photo}"]'
        )
    if method == "features":
        return (
            f"picture = cnnvis.features.visualize({load}, {FEATURE_CLASS})  # (3, H, W) in [0, 1]"
        )
    return f'e = cnnvis.explain({load}, "sample:{photo}", method="{method}")\ne.figure()'


def site_extras(model: str, photo: str, first: bool) -> list[tuple[str, str]]:
    """The sweep and the evaluation curves of one model and photo (and, for the model's first
    photo, its feature visualization), as gallery pictures; their file names."""
    from cnnvis.evaluate.figures import figures

    lm = cnnvis.load_model(model)
    names = []
    sweep = cnnvis.sweep(lm, f"sample:{photo}", method="grad-cam", layers="all")
    names.append((site_jpeg(sweep.figure(), SITE / site_name(model, photo, "sweep")), "sweep"))
    ev = cnnvis.evaluate(lm, f"sample:{photo}", ["grad-cam", "gradient"])
    curves = figures(ev)[f"curves-{photo}"]
    path = SITE / site_name(model, photo, "evaluation")
    names.append((site_jpeg(curves, path), "evaluation"))
    if first:
        from cnnvis import features
        from cnnvis.render import to_pil

        picture = features.visualize(lm, FEATURE_CLASS)
        path = SITE / site_name(model, photo, "features")
        to_pil(picture).convert("RGB").save(path, quality=SITE_QUALITY)
        names.append((path.name, "features"))
    return names


def site_page(sections: list[tuple[str, str, list[tuple[str, str]]]], out: Path) -> Path:
    """index.md of the site's gallery: a section per model and photo, each picture with its
    call."""
    lines = [
        "# Gallery",
        "",
        "Every registered method on the offline pretrained models and the bundled photos, as "
        "cnnvis draws it (signed maps red for the class and blue against it, the gradient "
        "family as |map|, CAMs over the image). Regenerate with "
        "`python docs/gen_gallery.py --site`; each picture shows the call that made it.",
    ]
    for model, photo, files in sections:
        lines += ["", f"## {model} · {photo}", ""]
        for name, method in files:
            title = {"features": f"feature visualization of class {FEATURE_CLASS}"}.get(
                method, method
            )
            lines += [
                f"### {title} ({photo}, {model}) {{#{Path(name).stem}}}",
                "",
                f"![{method} on {photo}, {model}]({name})",
                "",
                "```python",
                site_call(model, photo, method),
                "```",
                "",
            ]
    path = out / "index.md"
    path.write_text("\n".join(lines))
    return path


def site_name(model: str, photo: str, method: str) -> str:
    """A gallery picture's file name: default--cat--grad-cam.jpg."""
    safe = model.replace(":", "-")
    return f"{safe}--{photo}--{method.replace('+', 'p')}.jpg"


def index_html(sections: list[tuple[str, dict[str, str]]], out: Path) -> Path:
    """index.html: one section per model x photo, its figures in order."""
    parts = [
        "<!doctype html><meta charset='utf-8'><title>cnnvis gallery</title>",
        "<style>body{font-family:sans-serif;margin:1em}figure{display:inline-block;"
        "vertical-align:top;margin:.4em}img{max-width:100%}figcaption{font-size:small}</style>",
        "<h1>cnnvis gallery</h1><p>Every registered method on the offline model(s) and three "
        "sample photos, drawn by <code>cnnvis.render</code>. Regenerate: <code>make gallery"
        "</code>.</p>",
    ]
    for title, files in sections:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        for label, name in files.items():
            src = html.escape(f"{title.replace(' x ', '/')}/{name}")
            parts.append(
                f"<figure><a href='{src}'><img src='{src}' loading='lazy'></a>"
                f"<figcaption>{html.escape(label)}</figcaption></figure>"
            )
    path = out / "index.html"
    path.write_text("\n".join(parts) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--photos", default=",".join(PHOTOS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--methods", default="all", help="comma-separated, or all")
    parser.add_argument("--reuse", action="store_true", help="redraw from the cached maps")
    parser.add_argument("--site", action="store_true", help="the site's gallery: docs/gallery/")
    parser.add_argument(
        "--no-extras", action="store_true", help="--site without sweeps, evaluation, features"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    methods = (
        [m.name for m in cnnvis.list_methods()]
        if args.methods == "all"
        else args.methods.split(",")
    )
    if args.site:
        models = SITE_MODELS if args.models == ",".join(MODELS) else args.models.split(",")
        site_sections = []
        SITE.mkdir(parents=True, exist_ok=True)
        for model in models:
            photos = args.photos.split(",")
            for photo in photos[:1] if model in SITE_ONE_PHOTO else photos:
                cache = args.out / "maps" / f"{model.replace(':', '-')}-{photo}.pt"
                explanations = compute(model, photo, methods, cache, args.reuse)
                names = []
                for e in explanations:
                    name = site_name(model, photo, e.method)
                    names.append((site_picture(e, SITE / name), e.method))
                first = photo == args.photos.split(",")[0]
                if not args.no_extras:
                    names += site_extras(model, photo, first)
                site_sections.append((model, photo, names))
        print(site_page(site_sections, SITE))
        return
    sections = []
    for model in args.models.split(","):
        for photo in args.photos.split(","):
            cache = args.out / "maps" / f"{model}-{photo}.pt"
            explanations = compute(model, photo, methods, cache, args.reuse)
            folder = args.out / model / photo
            files = draw(explanations, folder)
            if photo == args.photos.split(",")[0]:
                files["random weights"] = random_weights_figure(photo, folder)
            sections.append((f"{model} x {photo}", files))
    print(index_html(sections, args.out))


if __name__ == "__main__":
    main()
