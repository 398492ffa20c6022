"""`cnnvis.fuse_layers` from the CLI: `cnnvis sweep --fuse mean|max`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import cnnvis
from cnnvis.cli import main

R18 = ["--model", "torchvision:resnet18", "--weights", "none"]


@pytest.mark.parametrize("how", ["mean", "max"])
def test_sweep_fuse_writes_the_fused_map_equal_to_the_library(tmp_path, capsys, how):
    argv = ["sweep", *R18, "--method", "grad-cam", "--layers", "layer[34]"]
    code = main([*argv, "--fuse", how, "--out", str(tmp_path), "--quiet"])
    assert code == 0, capsys.readouterr().err
    folder = tmp_path / "cat"
    manifest = json.loads((folder / "sweep-grad-cam.json").read_text())
    fused_entry = [m for m in manifest["layers"] if m["npz_key"] == f"fused-{how}"]
    assert len(fused_entry) == 1 and (folder / fused_entry[0]["png"]).is_file()
    with np.load(folder / "sweep-grad-cam.npz") as maps:
        assert set(maps.files) == {"layer3", "layer4", f"fused-{how}"}
        stored = {k: maps[k] for k in maps.files}

    # the same numbers as fusing the stored per-layer maps by hand: ReLU, min-max, mean / max
    def unit(m):
        m = np.maximum(m, 0)
        return (m - m.min()) / (m.max() - m.min())

    per_layer = np.stack([unit(stored["layer3"]), unit(stored["layer4"])])
    expected = unit(per_layer.mean(0)) if how == "mean" else per_layer.max(0)
    np.testing.assert_allclose(stored[f"fused-{how}"], expected, atol=1e-6)
    assert stored[f"fused-{how}"].max() == 1.0


def test_fuse_layers_is_exported_and_refuses_an_unknown_fusion():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    )
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    result = cnnvis.sweep(model, x, "grad-cam", layers=["1", "3"])
    assert cnnvis.fuse_layers(result, "max").map.shape == (1, 16, 16)
    with pytest.raises(cnnvis.MethodError, match="mean, max"):
        cnnvis.fuse_layers(result, "median")
