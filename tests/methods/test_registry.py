"""The method registry's typed facts: every method has a consistent record, the methods package
imports every method module by name, and the CLI, the web API and the docs table all show the
same `MethodInfo.to_row()`."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path

import pytest

import cnnvis
from cnnvis import methods
from cnnvis.cli import main
from cnnvis.errors import MethodError
from cnnvis.methods import Cost, MethodInfo, Needs, get_method, list_methods, register
from cnnvis.methods.facts import KINDS, PERS
from cnnvis.methods.registry import scripted_methods

ROOT = Path(__file__).resolve().parents[2]
METHODS_DIR = Path(methods.__file__).parent
NOT_METHOD_MODULES = {"__init__", "facts", "registry", "peers"}  # and the private helpers, _*.py
MANY_PASSES = {
    "shapley-sampling",
    "kernel-shap",
    "lime",
    "feature-ablation",
    "integrated-gradients",
    "smoothgrad",
    "gradient-shap",
    "score-cam",
    "ablation-cam",
    "occlusion",
    "rise",
    "drise",
}


def old_many_passes(passes: str) -> bool:
    """What the web page decided from the cost's words before the facts were typed."""
    return bool(re.search(r"\bsteps\b|\bsamples\b|\bper (?!layer)", passes))


@pytest.mark.parametrize("info", list_methods(), ids=lambda m: m.name)
def test_every_method_has_a_consistent_typed_record(info: MethodInfo):
    assert info.kind in KINDS and isinstance(info.cost, Cost) and isinstance(info.needs, Needs)
    assert info.cost.text and info.cost.forwards >= 0 and info.cost.backwards >= 0
    assert info.cost.per is None or info.cost.per in PERS
    assert info.many_passes == (info.cost.per is not None) == old_many_passes(info.passes)
    if info.cost.per is not None:  # the words say what the passes are counted in
        assert info.cost.per in info.cost.text
    if info.kind == "cam":
        assert info.needs_layer
    if info.layer_gradients:
        assert info.needs_layer and info.cost.backwards >= 1
    for base in info.needs.base_methods:
        assert get_method(base).kind == "pixel" and not get_method(base).wraps_method
    assert info.passes == info.cost.text and list(info.needs) == info.needs.words()


def test_many_passes_per_channel_and_wrapping_are_the_known_methods():
    assert {m.name for m in list_methods() if m.many_passes} == MANY_PASSES
    assert {m.name for m in list_methods() if m.per_channel} == {"score-cam", "ablation-cam"}
    assert [m.name for m in list_methods() if m.wraps_method] == ["smoothgrad"]
    assert not get_method("eigen-cam").layer_gradients and get_method("grad-cam++").layer_gradients
    needs = {m.name: m.needs.words() for m in list_methods() if m.needs.words() != ["layer"]}
    assert needs == {
        "gradient": [],
        "guided-backprop": [],
        "deconvnet": [],
        "gradient-x-input": [],
        "integrated-gradients": ["baseline"],
        "smoothgrad": ["base method"],
        "gradient-shap": ["baseline"],
        "lrp": [],
        "deeplift": ["baseline"],
        "deeplift-shap": ["baseline"],
        "cam": ["layer", "global-average-pool + linear head"],
        "occlusion": ["window size"],
        "feature-ablation": ["baseline"],
        "kernel-shap": ["baseline"],
        "lime": ["baseline"],
        "shapley-sampling": ["baseline"],
        "rise": ["number of masks"],
        "drise": ["number of masks"],
    }


def test_scripted_methods_come_from_the_flags():
    expected = [
        "gradient",
        "gradient-x-input",
        "integrated-gradients",
        "gradient-shap",
        "occlusion",
        "rise",
        "feature-ablation",
        "kernel-shap",
        "lime",
        "shapley-sampling",
        "drise",
        "smoothgrad (base gradient, gradient-x-input or integrated-gradients)",
    ]
    assert scripted_methods() == expected
    assert [m.name for m in list_methods(torchscript=True)] == [
        "gradient",
        "gradient-x-input",
        "integrated-gradients",
        "smoothgrad",
        "gradient-shap",
        "occlusion",
        "rise",
        "feature-ablation",
        "kernel-shap",
        "lime",
        "shapley-sampling",
        "drise",
    ]


def test_inconsistent_records_are_refused():
    def compute(rec, layer):
        return rec

    facts = {"summary": "s", "formula": "f", "paper": "p", "compute": compute}
    with pytest.raises(MethodError, match="kind"):
        MethodInfo(name="x", kind="pixels", cost=Cost("1 forward"), **facts)
    with pytest.raises(MethodError, match="needs a layer"):
        MethodInfo(name="x", kind="cam", cost=Cost("1 forward"), **facts)
    with pytest.raises(MethodError, match="layer gradients"):
        MethodInfo(
            name="x",
            kind="cam",
            cost=Cost("1 forward"),
            needs=Needs(layer=True),
            layer_gradients=True,
            **facts,
        )
    with pytest.raises(MethodError, match="per"):
        Cost("1 forward per pixel", per="pixel")
    with pytest.raises(MethodError, match=">= 0"):
        Cost("-1 forward", forwards=-1)
    with pytest.raises(MethodError, match="already registered"):
        register(get_method("gradient"))


def test_to_row_round_trips_through_json_and_has_the_web_schema_keys():
    pytest.importorskip("pydantic")
    from cnnvis.web.schemas import MethodOut

    for info in list_methods():
        row = info.to_row()
        assert json.loads(json.dumps(row)) == row
        assert list(row) == list(MethodOut.model_fields)
        assert MethodOut.model_validate(row).model_dump() == row


def test_the_methods_package_imports_every_method_module_by_name():
    init = METHODS_DIR / "__init__.py"
    tree = ast.parse(init.read_text())
    imported = [
        alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None
        for alias in node.names
    ]
    files = {
        p.stem
        for p in METHODS_DIR.glob("*.py")
        if p.stem not in NOT_METHOD_MODULES and not p.stem.startswith("_")
    }
    assert sorted(imported) == sorted(files), "import every method module in methods/__init__.py"
    registered = {m.compute.__module__.rsplit(".", 1)[-1] for m in list_methods()}
    assert registered == files, "every method module registers a method, and only those do"
    assert "pkgutil" not in init.read_text() and "import_module" not in init.read_text()
    order = [
        min(m.order for m in list_methods() if m.compute.__module__ == f"cnnvis.methods.{name}")
        for name in imported
    ]
    assert order == sorted(order), "the imports are in the order `cnnvis methods` lists them"


def test_cli_web_and_docs_show_the_same_rows(capsys):
    rows = [m.to_row() for m in list_methods()]

    assert main(["methods", "--json"]) == 0
    cli_rows = json.loads(capsys.readouterr().out)
    assert cli_rows == [{key: row[key] for key in cli_rows[0]} for row in rows]

    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from cnnvis.web import create_app

    client = TestClient(create_app("timm:test_efficientnet", weights=None))
    assert client.get("/api/methods").json() == rows

    spec = importlib.util.spec_from_file_location("gen_methods", ROOT / "docs/gen_methods_table.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    lines = generator.method_table().splitlines()[2:]
    for line, row in zip(lines, rows, strict=True):
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        needs = ", ".join(row["needs"]) or "-"
        shown = [row[key] for key in ("kind", "summary", "formula", "paper")]
        assert cells == [f"`{row['name']}`", *shown, needs, row["passes"]]


def test_the_package_exports_the_same_registry():
    assert cnnvis.list_methods() == list_methods() and cnnvis.MethodInfo is MethodInfo
