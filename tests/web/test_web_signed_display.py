"""The page draws a signed map as the CLI's figures do: zero at the diverging colormap's
centre (display value 128), red where the map raised the score and blue where it lowered it;
RISE relative to its mean; the gradient family as |map|."""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
from PIL import Image

import cnnvis
from cnnvis.web import views

from conftest import TinyCNN


def _values(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def _explained(method: str) -> cnnvis.Explanation:
    torch.manual_seed(0)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    return cnnvis.explain(TinyCNN().eval(), x, method)


def test_a_signed_map_puts_zero_at_the_centre_and_keeps_its_sign():
    e = _explained("gradient-x-input")
    raw = torch.zeros_like(e.map)
    raw[0, :, :8] = 1.0  # top half raised the score
    raw[0, :, 8:12] = -1.0  # a band lowered it
    e.map = raw
    url, blank, signed = views.display_values(e)
    values = _values(url)
    assert signed and not blank
    assert (values[:8] == 255).all() and (values[8:12] == 0).all()
    assert (values[12:] == 128).all()  # zero: the colormap's centre
    assert "zero at 128" in views.display_note(e)


def test_rise_is_shown_relative_to_its_mean():
    e = _explained("rise")
    url, _, signed = views.display_values(e)
    assert signed and "mean" in views.display_note(e)
    values = _values(url).astype(float)
    assert abs(values.mean() - 128) < 20  # a constant offset no longer fills the picture


def test_the_gradient_family_stays_magnitude_and_cams_stay_overlays():
    url, _, signed = views.display_values(_explained("gradient"))
    assert not signed and views.display_note(_explained("gradient")) == views.PIXEL_DISPLAY
    assert views.display_values(_explained("grad-cam"))[2] is False


def test_the_api_sends_the_diverging_colormap():
    from fastapi.testclient import TestClient

    from cnnvis.web import create_app

    with TestClient(create_app("torchvision:resnet18", weights=None)) as client:
        data = client.get("/api/colormaps").json()
    table = bytes.fromhex(data["signed"])
    assert len(table) == 768
    centre = np.frombuffer(table[3 * 127 : 3 * 129], dtype=np.uint8)
    assert centre.min() > 230  # RdBu_r's centre is (near) white
    assert table[0] < table[2] and table[-3] > table[-1]  # blue low end, red high end
