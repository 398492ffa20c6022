"""Rendering: PIL images and matplotlib figures from synthetic explanations."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnvis import errors
from cnnvis.explanation import Explanation, Sweep
from cnnvis.postprocess import DisplayError
from cnnvis.render import (
    colormap,
    explanation_figure,
    figure_png,
    heatmap,
    map_image,
    overlay,
    pixel_map_image,
    save_figure,
    save_map_png,
    sweep_figure,
    to_pil,
)

H, W = 24, 36  # non-square on purpose: catches (width, height) mix-ups


def blob(cy: float, cx: float, h: int = H, w: int = W, sigma: float = 3.0) -> torch.Tensor:
    """A gaussian bump (h, w) peaking at row cy, column cx."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))


def images(n: int = 1) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(n, 3, H, W)


def explanation(method: str, map: torch.Tensor, layer: str | None = None, **kw) -> Explanation:
    n = map.shape[0]
    fields = dict(
        targets=[285] * n,
        target_names=["Egyptian cat"] * n,
        probabilities=[0.63] * n,
        images=images(n),
        layer=layer,
        model="vgg16",
    )
    fields.update(kw)
    return Explanation(method=method, map=map, **fields)


def cam(n: int = 1) -> Explanation:
    return explanation("grad-cam", blob(6, 28)[None].repeat(n, 1, 1) - 0.2, layer="layer4")


def pixel(n: int = 1) -> Explanation:
    torch.manual_seed(1)
    return explanation("guided-backprop", torch.randn(n, 3, H, W))


def titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def png_size(fig, dpi: int) -> tuple[int, int]:
    """The pixel size matplotlib gives a figure at `dpi` (it truncates fractions)."""
    w, h = fig.get_size_inches()
    return int(w * dpi), int(h * dpi)


# PIL images


def test_to_pil_is_rgb_with_width_and_height_in_pil_order():
    image = torch.zeros(3, H, W)
    image[0] = 1.0  # red channel first: RGB, not BGR
    pil = to_pil(image)
    assert pil.mode == "RGB" and pil.size == (W, H)
    assert pil.getpixel((0, 0)) == (255, 0, 0)


def test_to_pil_clips_and_accepts_a_batch_of_one():
    image = torch.full((1, 3, 2, 2), 2.0)
    image[0, :, 0, 0] = -1.0
    array = np.asarray(to_pil(image))
    assert array[0, 0].tolist() == [0, 0, 0] and array[1, 1].tolist() == [255, 255, 255]


def test_heatmap_hottest_pixel_is_where_the_blob_is():
    m = blob(cy=17, cx=8)
    gray = np.asarray(heatmap(m, cmap="gray"))[..., 0]
    assert np.unravel_index(gray.argmax(), gray.shape) == (17, 8)
    jet = np.asarray(heatmap(m))  # hottest colour of jet, at the peak
    top = np.round(np.array(colormap("jet")(1.0)[:3]) * 255)
    assert jet.shape == (H, W, 3) and jet[17, 8].tolist() == top.tolist()


def test_heatmap_signed_zero_is_the_diverging_centre_colour():
    m = torch.zeros(H, W)
    m[2, 3], m[4, 5] = 2.0, -1.0
    rgb = np.asarray(heatmap(m, signed=True))
    centre = np.round(np.array(colormap("RdBu_r")(0.5)[:3]) * 255)
    assert rgb[10, 10].tolist() == centre.tolist()
    red, blue = rgb[2, 3].astype(int), rgb[4, 5].astype(int)
    assert red[0] > red[2] and blue[2] > blue[0]  # RdBu_r: positive red, negative blue
    # symmetric limits: -1 sits at 0.5 - 1/4 of the colormap, not at its end
    quarter = np.round(np.array(colormap("RdBu_r")(0.25)[:3]) * 255)
    assert np.abs(rgb[4, 5] - quarter).max() <= 1


def test_heatmap_of_blank_maps_does_not_crash():
    bottom = np.round(np.array(colormap("jet")(0.0)[:3]) * 255)
    centre = np.round(np.array(colormap("RdBu_r")(0.5)[:3]) * 255)
    for m in (torch.zeros(H, W), torch.full((H, W), 3.0), torch.full((H, W), float("nan"))):
        assert (np.asarray(heatmap(m)) == bottom).all()
    for m in (torch.zeros(H, W), torch.full((H, W), float("nan"))):
        assert (np.asarray(heatmap(m, signed=True)) == centre).all()


def test_overlay_size_mode_and_blend():
    image = images()[0]
    out = overlay(image, blob(6, 28))
    assert out.mode == "RGB" and out.size == (W, H)
    same = np.asarray(overlay(image, blob(6, 28), alpha=0.0)).astype(int)
    assert np.abs(same - np.asarray(to_pil(image)).astype(int)).max() <= 1
    heat = overlay(image, blob(6, 28), alpha=1.0)
    assert np.array_equal(np.asarray(heat), np.asarray(heatmap(blob(6, 28))))


def test_overlay_upsamples_a_small_map_to_the_image():
    image = images()[0]
    small = blob(1.5, 4.5, h=4, w=6, sigma=0.8)
    out = overlay(image, small, alpha=1.0, cmap="gray")
    assert out.size == (W, H)
    gray = np.asarray(out)[..., 0]
    row, col = np.unravel_index(gray.argmax(), gray.shape)
    assert abs(row - 11.5) <= 3 and abs(col - 27.5) <= 3


def test_overlay_validates_alpha_and_image_shape():
    with pytest.raises(DisplayError, match="alpha"):
        overlay(images()[0], blob(1, 1), alpha=1.5)
    with pytest.raises(DisplayError, match=r"\(3, H, W\)"):
        overlay(torch.zeros(H, W), blob(1, 1))


def test_pixel_map_image_modes():
    m = torch.zeros(3, H, W)
    m[0, 1, 2] = 4.0  # red channel positive
    m[2, 3, 4] = -2.0  # blue channel negative
    pos = np.asarray(pixel_map_image(m, "pos"))
    assert pos[1, 2].tolist() == [255, 0, 0] and pos[3, 4].tolist() == [0, 0, 0]
    neg = np.asarray(pixel_map_image(m, "neg"))
    assert neg[3, 4].tolist() == [0, 0, 255] and neg[1, 2].tolist() == [0, 0, 0]
    allm = np.asarray(pixel_map_image(m, "all"))  # min -2 -> 0, 0 -> 1/3, 4 -> 1
    assert allm[0, 0].tolist() == [85, 85, 85] and allm[1, 2, 0] == 255 and allm[3, 4, 2] == 0
    gray = pixel_map_image(m, "gray")
    assert gray.mode == "RGB" and gray.size == (W, H)
    g = np.asarray(gray)
    assert g[1, 2].tolist() == [255] * 3 and g[3, 4].tolist() == [128] * 3  # 2 / 4


def test_pixel_map_image_blank_and_bad_mode():
    for mode in ("all", "pos", "neg", "gray"):
        assert np.asarray(pixel_map_image(torch.zeros(3, H, W), mode)).max() == 0
    with pytest.raises(DisplayError, match="did you mean: gray"):
        pixel_map_image(torch.zeros(3, H, W), "grey")


def test_unknown_colormap_is_a_clear_typed_error():
    with pytest.raises(DisplayError, match="did you mean: jet") as info:
        heatmap(blob(1, 1), cmap="jett")
    assert isinstance(info.value, errors.CnnvisError) and isinstance(info.value, ValueError)
    with pytest.raises(DisplayError, match="colormap"):
        explanation_figure([cam()], cmap="not-a-map")
    assert colormap("viridis").name == "viridis"


# figures


def test_explanation_figure_panels_titles_and_png(tmp_path: Path):
    fig = explanation_figure([pixel(), cam()], cmap="jet")
    names = titles(fig)
    assert names[:2] == ["input", "guided-backprop (all)"]
    for expected in ("guided-backprop (pos)", "guided-backprop (neg)", "guided-backprop (|map|)"):
        assert expected in names
    assert "grad-cam @ layer4" in names
    suptitle = fig.get_suptitle()
    assert "Egyptian cat" in suptitle and "0.63" in suptitle and "vgg16" in suptitle
    assert len(fig.axes) == 6 + 2  # six panels, colorbars for the CAM and the grayscale
    size = png_size(fig, 50)
    path = save_figure(fig, tmp_path / "sub" / "panel.png", dpi=50)
    with Image.open(path) as png:
        assert png.format == "PNG" and np.abs(np.subtract(png.size, size)).max() <= 1


def test_explanation_figure_tutorial_layout():
    ggc = explanation("guided-grad-cam", pixel().map * blob(6, 28), layer="layer4")
    fig = explanation_figure([pixel(), cam(), ggc])
    names = titles(fig)
    assert names[:6] == [
        "input",
        "guided-backprop (all)",
        "guided-backprop (pos)",
        "guided-backprop (neg)",
        "guided-backprop (|map|)",
        "grad-cam @ layer4",
    ]
    assert "guided-grad-cam @ layer4 (|map|)" in names


def test_explanation_figure_with_cams_only_and_a_single_explanation():
    fig = explanation_figure(cam())
    assert titles(fig) == ["input", "grad-cam @ layer4"]
    assert fig.get_size_inches()[0] < 7  # two panels, not four columns


def test_explanation_figure_picks_the_image_of_a_batch():
    e = cam(3)
    e.targets, e.target_names, e.probabilities = [1, 2, 3], ["a", "b", "c"], [0.1, 0.2, 0.3]
    assert "c (3), p = 0.30" in explanation_figure([e], index=2).get_suptitle()
    assert "c (3)" in explanation_figure([e], index=-1).get_suptitle()
    with pytest.raises(DisplayError, match="out of range"):
        explanation_figure([e], index=3)
    with pytest.raises(DisplayError, match="at least one"):
        explanation_figure([])


def test_explanation_figure_names_each_target_when_they_differ():
    other = explanation("cam", blob(3, 3)[None], layer="features.28", targets=[281])
    other.target_names = ["tabby"]
    fig = explanation_figure([cam(), other])
    assert "several targets" in fig.get_suptitle()
    assert any("tabby" in t for t in titles(fig))


def test_blank_maps_render_as_the_image_with_a_note(tmp_path: Path):
    zero_cam = explanation("grad-cam", torch.zeros(1, H, W), layer="layer4")
    negative_cam = explanation("cam", -blob(5, 5)[None], layer="features.28")
    nan_pixel = explanation("deconvnet", torch.full((1, 3, H, W), float("nan")))
    zero_pixel = explanation("guided-backprop", torch.zeros(1, 3, H, W))
    fig = explanation_figure([zero_cam, negative_cam, nan_pixel, zero_pixel])
    names = titles(fig)
    assert sum("blank map" in t for t in names) == 2 + 4 + 4
    for ax in fig.axes:
        for artist in ax.get_images():
            assert np.isfinite(np.asarray(artist.get_array(), dtype=float)).all()
    save_figure(fig, tmp_path / "blank.png", dpi=30)
    only_positive = explanation("guided-backprop", torch.rand(1, 3, H, W) + 0.1)
    names = titles(explanation_figure([only_positive]))
    assert "guided-backprop (neg)\n(blank map)" in names
    assert "guided-backprop (pos)" in names


def test_long_titles_are_wrapped_to_the_panel():
    e = explanation("grad-cam", blob(3, 3)[None], layer="blocks.6.0.conv_pwl.very_long_name")
    fig = explanation_figure([e], panel_size=1.0)
    title = titles(fig)[1]
    assert "\n" in title and all(len(line) <= 14 for line in title.split("\n"))


def sweep31(kind: str = "cam") -> Sweep:
    torch.manual_seed(2)
    layers = [f"features.{i}" for i in range(31)]
    exps, shapes = {}, {}
    for i, layer in enumerate(layers):
        if kind == "cam":
            m = blob(6, 28)[None] + 0.1 * torch.rand(1, H, W)
        else:
            m = torch.randn(1, 3, H, W) * blob(6, 28)
        if i == 3:
            m = torch.zeros_like(m)  # a blank layer
        exps[layer] = explanation("guided-grad-cam" if kind == "pixel" else "grad-cam", m)
        side = 224 >> min(i // 7, 4)
        shapes[layer] = (1, 512 if i > 15 else 64, side, side)
    return Sweep("grad-cam" if kind == "cam" else "guided-grad-cam", exps, shapes)


def test_sweep_figure_with_31_layers(tmp_path: Path):
    fig = sweep_figure(sweep31())
    names = titles(fig)
    assert len(names) == 32 and names[0] == "input"
    assert names[1] == "features.0\n64x224x224"
    assert "features.28\n512x14x14" in names
    assert names[4] == "features.3\n64x224x224\n(blank map)"
    assert len(fig.axes) == 32 + 1  # one shared colorbar
    assert "grad-cam per layer" in fig.get_suptitle()
    size = png_size(fig, 40)
    with Image.open(save_figure(fig, tmp_path / "sweep.png", dpi=40)) as png:
        assert np.abs(np.subtract(png.size, size)).max() <= 1


def test_sweep_figure_of_a_pixel_method_gray_and_colour():
    gray = sweep_figure(sweep31("pixel"))
    assert len(gray.axes) == 33
    colour = sweep_figure(sweep31("pixel"), pixel_mode="all", ncols=4)
    assert len(colour.axes) == 32  # no colorbar for colour maps
    with pytest.raises(DisplayError, match="pixel display mode"):
        sweep_figure(sweep31("pixel"), pixel_mode="bw")
    with pytest.raises(DisplayError, match="no layers"):
        sweep_figure(Sweep("grad-cam", {}, {}))


# files


def test_save_map_png_one_map_per_file(tmp_path: Path):
    for e, mode in [(cam(), None), (cam(), "heatmap"), (cam(), "signed"), (pixel(), "gray")]:
        path = save_map_png(e, 0, tmp_path / f"{e.method}-{mode}.png", mode=mode)
        with Image.open(path) as png:
            assert png.size == (W, H) and png.mode == "RGB"
    with pytest.raises(DisplayError, match="did you mean: overlay"):
        map_image(cam(), 0, mode="overlai")


def test_figures_are_thread_safe_and_use_no_pyplot():
    maps = [pixel(), cam()]  # made here: pixel() seeds torch's global generator, which the
    # threads would share (a race in the test, not in the drawing)

    def draw(_: int) -> bytes:
        return figure_png(explanation_figure(maps), dpi=20)

    with ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(draw, range(4)))
    assert len(set(outputs)) == 1
    code = (
        "import sys; import cnnvis.render as r, torch; "
        "r.heatmap(torch.rand(4, 4)); "
        "print('matplotlib.pyplot' in sys.modules)"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": src},
    )
    assert done.stdout.split()[0] == "False"
