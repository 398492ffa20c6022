"""The README's method table is the registry's."""

from __future__ import annotations

from pathlib import Path

from cnnvis.docs import END, START, method_table
from cnnvis.methods import list_methods

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_method_table_matches_the_registry():
    text = README.read_text()
    table = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert table == method_table(), "run `python -m cnnvis.docs --write`"
    for m in list_methods():
        assert f"`{m.name}`" in table
