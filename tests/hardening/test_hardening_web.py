"""The same bad and unusual files (built in `test_hardening_images`) uploaded to the web API:
each good one is explained (200), each bad one is a 422 `ImageError` that says what to do, and
the server goes on answering; a model that outputs NaN is a 422 `ModelError`, not a picture.
"""

from __future__ import annotations

import pytest
import torch
from fastapi.testclient import TestClient
from test_hardening_images import BAD, GOOD, SmallCNN
from torch import nn

from cnnvis.model import LoadedModel, Preprocess
from cnnvis.web import create_app


@pytest.fixture(scope="module")
def client():
    model = LoadedModel(SmallCNN().eval(), name="small", preprocess=Preprocess(40, 32))
    with TestClient(create_app(model, max_pixels=50_000_000)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return {name: make() for name, (make, *_) in {**BAD, **GOOD}.items()}


def explain(client: TestClient, name: str, content: bytes, **data: str):
    form = {"methods": "gradient,grad-cam", **data}
    return client.post("/api/explain", files={"image": (name, content)}, data=form)


def test_bad_uploads_are_422_with_advice_and_the_server_goes_on(client, files):
    for name, (_, words) in BAD.items():
        response = explain(client, name, files[name])
        assert response.status_code == 422, (name, response.text)
        body = response.json()
        assert body["error"] == "ImageError", body
        detail = body["detail"]
        if name == "huge.png":  # the server's own limit, and no Python-side advice
            words = ("20000x20000 = 400,000,000 pixels", "limit of 50,000,000", "downscale")
            assert "max_pixels" not in detail
        elif name == "zero.png":
            words = ("uploaded file is empty",)
        for word in words:
            assert word in detail, (name, detail)
        assert "image bytes" not in detail
        assert explain(client, "ok.png", files["one_pixel.png"]).status_code == 200


def test_unusual_uploads_are_explained(client, files):
    for name, (_, _, size, _) in GOOD.items():
        response = explain(client, name, files[name])
        assert response.status_code == 200, (name, response.text)
        body = response.json()
        assert body["image_size"] == list(size), name
        assert [m["method"] for m in body["maps"]] == ["gradient", "grad-cam"]


def test_a_nan_model_is_a_model_error_not_a_picture():
    broken = nn.Sequential(*SmallCNN())
    with torch.no_grad():
        broken[-1].bias.fill_(float("nan"))
    lm = LoadedModel(broken.eval(), name="broken", preprocess=Preprocess(40, 32))
    with TestClient(create_app(lm)) as test_client:
        for route in ("/api/explain", "/api/classify"):
            response = test_client.post(route, data={"sample": "cat"})
            assert response.status_code == 422, response.text
            body = response.json()
            assert body["error"] == "ModelError" and "NaN or infinite" in body["detail"]


def test_the_first_frame_note_reaches_the_web_answer(client, files):
    body = explain(client, "animated.gif", files["animated.gif"]).json()
    assert len(body["notes"]) == 1 and "has 3 frames; only the first is used" in body["notes"][0]
    assert explain(client, "ok.png", files["one_pixel.png"]).json()["notes"] == []
