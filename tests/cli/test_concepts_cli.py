"""`cnnvis concepts dff`: the figure, maps and concepts written, and the --out guard."""

from __future__ import annotations

import json

import numpy as np

from cnnvis.cli.main import main
from cnnvis.errors import OutputError


def test_dff_writes_figure_maps_and_concepts(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["concepts", "dff", "sample:cat", "--k", "3", "--out", str(out), "-q"]) == 0
    summary = json.loads((out / "concepts.json").read_text())
    assert summary["layer"] == "bn2" and summary["k"] == 3
    assert [c["concept"] for c in summary["concepts"]] == [0, 1, 2]
    # the default model is a real ImageNet classifier: on the cat every concept votes for a cat
    for concept in summary["concepts"]:
        assert concept["top_classes"][0]["name"] in {"tabby", "tiger cat", "Egyptian cat"}
    maps = np.load(out / "maps.npz")
    assert maps["maps"].shape == (1, 3, 224, 224) and maps["basis"].shape[0] == 3
    assert (out / "concepts.png").read_bytes().startswith(b"\x89PNG")


def test_dff_refuses_a_foreign_out_folder(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("not cnnvis's")
    code = main(["concepts", "dff", "sample:cat", "--out", str(tmp_path)])
    assert code == OutputError.exit_code
    assert "--out" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_dff_says_when_k_is_too_large(tmp_path, capsys):
    code = main(["concepts", "dff", "sample:cat", "--layer", "global_pool", "--k", "2",
                 "--out", str(tmp_path / "o")])  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0 and "global_pool" in err
