"""Draw docs/architecture.png from the package's real import graph: one box per room (a
top-level module or a subpackage of cnnvis), rooms in floors by the longest chain of imports
below them, an arrow per room-to-room import. Run `python docs/gen_architecture.py`."""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_package_structure import import_graph  # noqa: E402

SKIP = {"cnnvis", "cnnvis.__main__"}  # the package's own re-exports, the `python -m` shim


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def room_graph() -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = defaultdict(set)
    for module, deps in import_graph().items():
        if module in SKIP:
            continue
        here = room(module)
        rooms[here]
        for dep in deps:
            if dep not in SKIP and room(dep) != here:
                rooms[here].add(room(dep))
    return rooms


def floors(graph: dict[str, set[str]]) -> dict[str, int]:
    """0 for rooms that import no other room, else 1 + the highest floor they import."""
    floor: dict[str, int] = {}

    def of(name: str) -> int:
        if name not in floor:
            floor[name] = 1 + max((of(d) for d in graph[name]), default=-1)
        return floor[name]

    for name in graph:
        of(name)
    return floor


def draw(path: Path) -> None:
    graph = room_graph()
    floor = floors(graph)
    levels: dict[int, list[str]] = defaultdict(list)
    for name in sorted(graph):
        levels[floor[name]].append(name)
    width = max(len(names) for names in levels.values())
    fig, ax = plt.subplots(figsize=(1.9 * width, 1.15 * len(levels)), dpi=110)
    where = {}
    for level, names in levels.items():
        for i, name in enumerate(names):
            where[name] = ((i + 0.5) * width / len(names), level)
    for name, deps in graph.items():
        for dep in deps:
            (x0, y0), (x1, y1) = where[name], where[dep]
            ax.add_patch(
                FancyArrowPatch(
                    (x0, y0 - 0.18),
                    (x1, y1 + 0.18),
                    arrowstyle="-|>",
                    mutation_scale=7,
                    color="#9aa5b1",
                    lw=0.6,
                    alpha=0.7,
                    shrinkA=2,
                    shrinkB=2,
                )
            )
    for name, (x, y) in where.items():
        package = (ROOT / "src" / "cnnvis" / name).is_dir()
        ax.add_patch(
            FancyBboxPatch(
                (x - 0.42, y - 0.18),
                0.84,
                0.36,
                boxstyle="round,pad=0.02",
                facecolor="#dbeafe" if package else "#f1f5f9",
                edgecolor="#334155",
                lw=0.8,
            )
        )
        ax.text(x, y, name + ("/" if package else ""), ha="center", va="center", fontsize=8)
    ax.set_xlim(-0.1, width + 0.1)
    ax.set_ylim(-0.6, len(levels) - 0.4)
    ax.axis("off")
    ax.set_title(
        "cnnvis: rooms (blue: packages) and their imports, which all point down", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    draw(ROOT / "docs" / "architecture.png")
    print("wrote docs/architecture.png")
