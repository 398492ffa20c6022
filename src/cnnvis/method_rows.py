"""The methods registry's listing rows as data, read without importing torch.

`cnnvis methods` and the command line's help show `MethodInfo.to_row()` of every registered
method; importing the registry imports every method and torch (seconds), so the rows are kept
in `data/methods.json`. `python -m cnnvis.method_rows` rewrites the file from the registry
(after adding or changing a method); tests/methods/test_method_rows.py fails when it is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

PATH = Path(__file__).parent / "data" / "methods.json"


def rows() -> list[dict[str, Any]]:
    """Every built-in method's row (`MethodInfo.to_row()`), in the registry's order."""
    rows: list[dict[str, Any]] = json.loads(PATH.read_text(encoding="utf-8"))
    return rows


def names(layer: bool = False) -> list[str]:
    """The method names; `layer=True`: only those that take a layer."""
    return [row["name"] for row in rows() if row["needs_layer"] or not layer]


def registry_text() -> str:
    """What `data/methods.json` should hold: the live registry's rows (imports torch)."""
    from .methods import list_methods

    return json.dumps([m.to_row() for m in list_methods()], indent=2, ensure_ascii=False) + "\n"


def write(path: Path = PATH) -> bool:
    """Rewrite `path` from the registry; whether it changed."""
    text = registry_text()
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


if __name__ == "__main__":
    changed = write()
    print(f"{PATH}: {'rewritten' if changed else 'up to date'}", file=sys.stderr)
