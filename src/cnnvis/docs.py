"""Documentation generated from the method registry (the README's method table).

python -m cnnvis.docs            # print the table
python -m cnnvis.docs --write    # update README.md between its markers
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .methods import list_methods

START, END = "<!-- methods:start -->", "<!-- methods:end -->"


def method_table() -> str:
    """A Markdown table of every registered method: formula, paper, needs, cost in passes."""
    rows = [
        "| method | kind | what it shows | formula | paper | needs | cost |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in list_methods():
        needs = ", ".join(m.needs) or "-"
        rows.append(
            f"| `{m.name}` | {m.kind} | {m.summary} | {m.formula} | {m.paper} | {needs} "
            f"| {m.passes} |"
        )
    return "\n".join(rows)


def update_readme(path: Path) -> bool:
    """Replace the table between the markers; True when the file changed."""
    text = path.read_text()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    new = pattern.sub(f"{START}\n{method_table()}\n{END}", text)
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":
    if "--write" in sys.argv:
        update_readme(Path("README.md"))
    else:
        print(method_table())
