"""The house rules, read from the source: no import circle between cnnvis's modules (imports
at module level and inside functions alike), and no module over 500 lines.

Excepted from the graph, as pandas does for `.plot`: imports under `if TYPE_CHECKING:` (types
only, never run) and the lazy imports inside the display methods of result objects
(`DISPLAY_METHODS`: an `Explanation` draws itself with `render`, which reads `Explanation`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cnnvis"
DISPLAY_METHODS = frozenset(
    {"_repr_png_", "_repr_html_", "show", "figure", "save", "html", "text_table", "csv"}
)
MAX_LINES = 500


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


class ImportVisitor(ast.NodeVisitor):
    """Every `import` / `from ... import` of a module, skipping the excepted places."""

    def __init__(self, module: str, is_package: bool, modules: dict[str, Path]) -> None:
        self.module, self.is_package, self.modules = module, is_package, modules
        self.found: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
        if name == "TYPE_CHECKING":
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if node.name not in DISPLAY_METHODS:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            package = self.module.split(".")
            if not self.is_package:
                package.pop()
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([base] if base else []))
        for alias in node.names:
            full = f"{base}.{alias.name}"
            self._add(full if full in self.modules else base)

    def _add(self, name: str) -> None:
        while name and name not in self.modules:
            name = name.rpartition(".")[0]
        if name.startswith("cnnvis") and name != self.module:
            self.found.add(name)


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    graph = {}
    for name, path in modules.items():
        visitor = ImportVisitor(name, path.name == "__init__.py", modules)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        graph[name] = visitor.found
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_modules():
    graph = import_graph()
    assert len(graph) > 50 and sum(map(len, graph.values())) > 200  # the reader sees the tree
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    source = "def f():\n    from .b import x\n"
    visitor = ImportVisitor("cnnvis.a", False, {"cnnvis.a": PACKAGE, "cnnvis.b": PACKAGE})
    visitor.visit(ast.parse(source))
    assert visitor.found == {"cnnvis.b"}
    excepted = "def show(self):\n    from .b import x\nif TYPE_CHECKING:\n    from .b import y\n"
    visitor = ImportVisitor("cnnvis.a", False, {"cnnvis.a": PACKAGE, "cnnvis.b": PACKAGE})
    visitor.visit(ast.parse(excepted))
    assert visitor.found == set()


def test_engine_modules_do_not_import_front_ends():
    """The engine (recording, forwards, layers, rules, targets) sits below the methods and the
    front ends: nothing in it imports the method registry, the CLI, the web page or batch."""
    graph = import_graph()
    engine = [m for m in graph if m.count(".") and m.split(".")[1] in ENGINE]
    above = ("cnnvis.methods", "cnnvis.cli", "cnnvis.web", "cnnvis.batch", "cnnvis.api")
    for module in engine:
        wrong = sorted(d for d in graph[module] if d.startswith(above))
        assert not wrong, f"{module} imports {wrong}"


ENGINE = {"capture", "forwards", "layers", "rules", "targets", "errors", "folding", "model"}


@pytest.mark.parametrize("name", sorted(module_names()))
def test_no_module_over_500_lines(name):
    lines = module_names()[name].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by role"
