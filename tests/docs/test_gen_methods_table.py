"""The README's method table is the registry's (docs/gen_methods_table.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cnnvis.methods import list_methods

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "docs" / "guides" / "methods.md"


def load_generator():
    """docs/gen_methods_table.py as a module (docs/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(
        "gen_methods_table", ROOT / "docs" / "gen_methods_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_method_table_matches_the_registry():
    generator = load_generator()
    text = README.read_text()
    table = text.split(generator.START, 1)[1].split(generator.END, 1)[0].strip()
    assert table == generator.method_table(), "run `python docs/gen_methods_table.py --write`"
    for m in list_methods():
        assert f"`{m.name}`" in table


def test_update_readme_rewrites_only_between_the_markers(tmp_path):
    generator = load_generator()
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{generator.START}\nold\n{generator.END}\nafter\n")
    assert generator.update_readme(readme)
    assert readme.read_text() == (
        f"before\n{generator.START}\n{generator.method_table()}\n{generator.END}\nafter\n"
    )
    assert not generator.update_readme(readme)
