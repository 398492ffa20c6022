"""Jupyter displays (_repr_png_ / _repr_html_ / show) and the tutorial notebook, executed."""

from __future__ import annotations

import io
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from PIL import Image

import cnnvis
from cnnvis import notebook, render
from cnnvis.explanation import Prediction

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "tutorial.ipynb"


@pytest.fixture
def explanation(tiny_cnn, tiny_input):
    return cnnvis.explain(tiny_cnn, tiny_input[:2], "grad-cam")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(data)).size


def test_explanation_displays_as_the_panel(explanation, monkeypatch):
    calls = []
    original = render.explanation_figure
    monkeypatch.setattr(
        render, "explanation_figure", lambda *a, **k: calls.append(a) or original(*a, **k)
    )
    png = explanation._repr_png_()
    width, height = _png_size(png)
    assert width > height > 100
    html = explanation._repr_html_()
    assert html.count("<img src='data:image/png;base64,") == 2  # both images of the batch
    assert "grad-cam" in html and "relu2" in html and explanation.target_names[1] in html
    assert len(calls) == 2, "the PNG is drawn once for both formats (and once for image 1)"


def test_sweep_displays_as_the_grid(tiny_cnn, tiny_input):
    sweep = cnnvis.sweep(tiny_cnn, tiny_input[:1], "grad-cam")
    width, _ = _png_size(sweep._repr_png_())
    assert width > 400
    html = sweep._repr_html_()
    assert "4 layers" in html and "data:image/png;base64," in html


def test_predictions_display_as_a_table(tiny_cnn, tiny_input):
    preds = cnnvis.classify(tiny_cnn, tiny_input[0], top_k=3)
    assert type(preds) is list  # classify still returns a plain list
    assert "<table" in preds[0]._repr_html_()
    table = notebook.predictions_table(preds)
    assert table == preds and table._repr_html_().count("<tr") == 4
    batch = notebook.predictions_table(cnnvis.classify(tiny_cnn, tiny_input, top_k=2))
    assert batch._repr_html_().count("<table") == 3
    assert isinstance(Prediction(1, "a", 0.5)._repr_html_(), str)


def test_show_hands_the_figure_to_pyplot(explanation, monkeypatch):
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(plt.gcf()))
    explanation.show(1)
    assert len(shown) == 1 and len(shown[0].axes) >= 2
    plt.close("all")


def test_tutorial_notebook_runs(tmp_path):
    """examples/tutorial.ipynb, executed top to bottom in a fresh kernel."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "stored clean"
    start = time.perf_counter()
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    seconds = time.perf_counter() - start
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("Egyptian cat" in h and "<table" in h for h in html)  # classify
    assert any("guided-backprop" in h and "data:image/png" in h for h in html)  # panels
    assert any("guided-grad-cam</b> at 20 layers" in h for h in html)  # the sweep
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) >= 6
    assert seconds < 240, f"the notebook took {seconds:.0f} s"
