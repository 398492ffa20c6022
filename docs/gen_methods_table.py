"""The method table of the guide docs/guides/methods.md, generated from the method registry (`MethodInfo.to_row()`).

python docs/gen_methods_table.py            # print the table
python docs/gen_methods_table.py --write    # update docs/guides/methods.md between its markers
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from cnnvis.methods import list_methods

README = Path(__file__).resolve().parents[1] / "docs" / "guides" / "methods.md"
START, END = "<!-- methods:start -->", "<!-- methods:end -->"


def method_table() -> str:
    """A Markdown table of every registered method: formula, paper, needs, cost in passes."""
    rows = [
        "| method | kind | what it shows | formula | paper | needs | cost |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in (m.to_row() for m in list_methods()):
        needs = ", ".join(row["needs"]) or "-"
        rows.append(
            f"| `{row['name']}` | {row['kind']} | {row['summary']} | {row['formula']} "
            f"| {row['paper']} | {needs} | {row['passes']} |"
        )
    return "\n".join(rows)


def update_readme(path: Path = README) -> bool:
    """Replace the table between the markers; True when the file changed."""
    text = path.read_text()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    new = pattern.sub(f"{START}\n{method_table()}\n{END}", text)
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":
    if "--write" in sys.argv:
        update_readme()
    else:
        print(method_table())
