"""The web app's JSON API through FastAPI's TestClient: listings, classify, explain, sweep,
downloads, every error case (413, 422, 404), concurrency, the model cache, and `cnnvis serve`.

One random-init timm test model (`timm:test_efficientnet`, 160 px) serves the whole module: its
predictions do not matter, only that the API returns what the library computes.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import tempfile
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

import cnnvis
from cnnvis.cli import main
from cnnvis.cli import serve as serve_command
from cnnvis.errors import ModelError
from cnnvis.web import create_app
from cnnvis.web import views as web_views
from cnnvis.web.state import ModelCache

MODEL = "timm:test_efficientnet"
ROUTES = ("/api/models", "/api/methods", "/api/layers", "/api/classify", "/api/explain")


@pytest.fixture(scope="module")
def app():
    return create_app(MODEL, weights=None)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def model(app, client):
    """The served model object (loaded through the app, as a request would)."""
    return app.state.cnnvis.model(None)


@pytest.fixture(scope="module")
def cat_png() -> bytes:
    buffer = io.BytesIO()
    cnnvis.load_image("sample:cat").save(buffer, format="PNG")
    return buffer.getvalue()


def decode(data_url: str) -> np.ndarray:
    head, _, payload = data_url.partition(",")
    assert head == "data:image/png;base64"
    import base64

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))))


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail", "error"}
    assert isinstance(body["detail"], str) and body["detail"]
    return body


# ----------------------------------------------------------------------------- page, schema


def test_openapi_documents_every_route(client):
    spec = client.get("/openapi.json").json()
    for path in (*ROUTES, "/api/sweep", "/api/samples", "/api/colormaps"):
        assert path in spec["paths"], path
    explain = spec["paths"]["/api/explain"]["post"]
    form = explain["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["image"] == {
        "type": "string",
        "format": "binary",
        "title": "Image",
        "description": form["properties"]["image"]["description"],
    }
    assert {"sample", "model", "methods", "layer", "target"} <= set(form["properties"])
    assert {"200", "413", "422"} <= set(explain["responses"])
    assert "ErrorOut" in spec["components"]["schemas"]


def test_page_and_static_files_work_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    texts = [page.text] + [client.get(f"/static/{n}").text for n in ("app.js", "style.css")]
    for text in texts:  # no CDN, no web font, nothing fetched from elsewhere
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    assert client.get("/docs").status_code == 404  # Swagger UI would need a CDN


# ----------------------------------------------------------------------------- listings


def test_listings(client, model):
    models = client.get("/api/models").json()
    assert models["default"] == MODEL
    assert models["models"][0] == {
        "name": MODEL,
        "weights": None,
        "served": True,
        "loaded": True,
        "local": True,
    }
    methods = client.get("/api/methods").json()
    assert [m["name"] for m in methods] == [m.name for m in cnnvis.list_methods()]
    by_name = {m["name"]: m for m in methods}
    assert by_name["grad-cam"]["needs_layer"] and not by_name["grad-cam"]["many_passes"]
    assert by_name["score-cam"]["many_passes"] and not by_name["guided-grad-cam"]["many_passes"]
    samples = client.get("/api/samples").json()
    assert samples["default"] == "cat" and "coffee" in samples["samples"]
    colormaps = client.get("/api/colormaps").json()
    assert colormaps["default"] == "jet"
    jet = bytes.fromhex(colormaps["colormaps"]["jet"])
    assert len(jet) == 768 and jet[:3] != jet[-3:]
    limits = client.get("/api/limits").json()
    assert limits["max_upload_bytes"] == 20_000_000 and limits["max_pixels"] == 50_000_000


def test_layers_mark_the_default(client, model):
    body = client.get("/api/layers").json()
    infos = cnnvis.list_layers(model.module, (1, 3, 160, 160))
    assert body["model"] == MODEL and body["input_size"] == 160
    assert body["default"] == cnnvis.default_layer(model.module, (1, 3, 160, 160))
    assert [row["name"] for row in body["layers"] if row["default"]] == [body["default"]]
    assert [r["name"] for r in body["layers"]] == [i.name for i in infos if i.output_shape]
    assert any(r["sweep"] for r in body["layers"])


# ----------------------------------------------------------------------------- the work


def test_classify_a_sample_and_an_upload_alike(client, cat_png, model):
    by_sample = client.post("/api/classify", data={"sample": "cat", "top_k": "3"}).json()
    files = {"image": ("chelsea.png", cat_png, "image/png")}
    by_upload = client.post("/api/classify", files=files, data={"top_k": "3"}).json()
    expected = cnnvis.classify(model, cnnvis.load_image("sample:cat"), top_k=3)
    for body in (by_sample, by_upload):
        assert [(p["index"], p["name"]) for p in body["predictions"]] == [
            (p.index, p.name) for p in expected
        ]
        assert decode(body["input"]).shape == (160, 160, 3)
    assert by_sample["source"] == "sample:cat" and by_upload["source"] == "chelsea.png"
    assert by_upload["image_size"] == [451, 300]


def test_explain_returns_what_the_library_computes(client, model):
    data = {"sample": "cat", "methods": "grad-cam,gradient", "target": "7", "top_k": "3"}
    body = client.post("/api/explain", data=data).json()
    assert body["target"]["index"] == 7 and body["target"]["requested"] == "7"
    assert [m["method"] for m in body["maps"]] == ["grad-cam", "gradient"]
    assert len(body["predictions"]) == 3 and body["skipped"] == []
    image = cnnvis.load_image("sample:cat")
    for shown in body["maps"]:
        e = cnnvis.explain(model, image, shown["method"], target=7)
        assert shown["layer"] == e.layer
        values, blank, signed = web_views.display_values(e)
        assert shown["signed"] is signed is False
        assert not blank and not shown["blank"]
        assert np.array_equal(decode(shown["values"]), decode(values))
        assert decode(shown["values"]).shape == (160, 160)


def test_explain_downloads(client, model):
    data = {"sample": "cat", "methods": "grad-cam,guided-backprop", "target": "tabby"}
    body = client.post("/api/explain", data=data).json()
    assert body["target"]["name"] == "tabby" and body["target"]["index"] == 281
    links = body["downloads"]

    figure = client.get(links["figure"] + "?cmap=viridis&alpha=0.3")
    assert figure.headers["content-type"] == "image/png"
    assert "attachment" in figure.headers["content-disposition"]
    assert Image.open(io.BytesIO(figure.content)).size[0] > 400

    maps = np.load(io.BytesIO(client.get(links["maps"]).content))
    layer = body["maps"][0]["layer"]
    assert set(maps.files) == {f"grad-cam@{layer}", "guided-backprop", "image"}
    e = cnnvis.explain(model, "sample:cat", "grad-cam", target=281)
    assert maps[f"grad-cam@{layer}"].dtype == np.float32
    np.testing.assert_allclose(maps[f"grad-cam@{layer}"], e.map[0].numpy(), rtol=1e-5, atol=1e-6)
    assert maps["guided-backprop"].shape == (3, 160, 160)

    manifest = json.loads(client.get(links["manifest"]).content)
    assert manifest["target"]["index"] == 281 and manifest["target"]["requested"] == "tabby"
    assert manifest["model"] == MODEL and manifest["source"] == "sample:cat"
    assert [m["npz_key"] for m in manifest["methods"]] == [f"grad-cam@{layer}", "guided-backprop"]

    bad = error_of(client.get(links["figure"] + "?cmap=jett"), 422)
    assert "did you mean: jet" in bad["detail"]
    error_of(client.get(links["figure"] + "?alpha=2"), 422)
    gone = error_of(client.get("/api/results/0123abc/maps.npz"), 404)
    assert "explain the image again" in gone["detail"]


def test_sweep_covers_the_main_path(client, model):
    body = client.post("/api/sweep", data={"sample": "cat", "method": "grad-cam"}).json()
    expected = cnnvis.sweep(model, "sample:cat", "grad-cam")
    assert [row["name"] for row in body["layers"]] == expected.layers
    assert body["method"] == "grad-cam" and len(body["layers"]) > 3
    first, last = (decode(body["layers"][i]["values"]) for i in (0, -1))
    assert first.shape == last.shape == (160, 160) and not np.array_equal(first, last)
    maps = np.load(io.BytesIO(client.get(body["downloads"]["maps"]).content))
    assert set(maps.files) == {*expected.layers, "image"}
    manifest = json.loads(client.get(body["downloads"]["manifest"]).content)
    assert [row["layer"] for row in manifest["layers"]] == expected.layers
    glob = client.post("/api/sweep", data={"sample": "cat", "layers": "blocks.*"}).json()
    assert all(row["name"].startswith("blocks.") for row in glob["layers"])


# ----------------------------------------------------------------------------- errors


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels and holds almost nothing: a decompression bomb
    as far as the header goes (never decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_upload_over_the_limit_is_413(client):
    big = b"\x89PNG" + b"\x00" * 20_000_000
    body = error_of(client.post("/api/explain", files={"image": ("big.png", big)}), 413)
    assert body["error"] == "TooLarge" and "(20.0 MB) is over" in body["detail"]
    assert "limit of 20 MB" in body["detail"]


def test_streamed_upload_over_the_limit_is_413_too():
    """No Content-Length (chunked): the limit holds while the body streams in."""
    small = TestClient(create_app(MODEL, weights=None, max_upload_mb=0.1))
    boundary = "cnnvisboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    def chunks():
        yield head
        for _ in range(40):
            yield b"\x00" * 10_000

    response = small.post(
        "/api/classify",
        content=chunks(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert error_of(response, 413)["error"] == "TooLarge"


def test_upload_limit_is_configurable():
    small = TestClient(create_app(MODEL, weights=None, max_upload_mb=0.05))
    png = io.BytesIO()
    Image.new("RGB", (40, 40), (200, 30, 30)).save(png, format="PNG")
    assert (
        small.post("/api/classify", files={"image": ("a.png", png.getvalue())}).status_code == 200
    )
    error_of(small.post("/api/classify", files={"image": ("b.png", b"\x00" * 60_000)}), 413)


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("notes.txt", b"hello, this is text", "not an image"),
        ("doc.pdf", b"%PDF-1.7\n%binary", "PDF document"),
        ("empty.png", b"", "empty"),
        ("broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", "damaged or truncated"),
    ],
)
def test_non_images_are_422(client, name, content, words):
    body = error_of(client.post("/api/explain", files={"image": (name, content)}), 422)
    assert body["error"] == "ImageError" and words in body["detail"]
    assert "image bytes" not in body["detail"]


@pytest.mark.parametrize(
    ("side", "words"),
    [
        (8_000, "8000x8000 = 64,000,000 pixels, more than the limit of 50,000,000"),
        (100_000, "too large to decode safely"),  # PIL's own bomb check comes first
    ],
)
def test_too_many_pixels_is_422_before_decoding(client, side, words):
    bomb = _png_header_only(side, side)
    assert len(bomb) < 200
    body = error_of(client.post("/api/explain", files={"image": ("bomb.png", bomb)}), 422)
    assert body["error"] == "ImageError" and words in body["detail"]
    assert "max_pixels" not in body["detail"] and "MAX_IMAGE_PIXELS" not in body["detail"]


def test_pixel_limit_is_configurable(cat_png):
    strict = TestClient(create_app(MODEL, weights=None, max_pixels=100_000))
    body = error_of(strict.post("/api/classify", files={"image": ("c.png", cat_png)}), 422)
    assert "451x300 = 135,300 pixels" in body["detail"]


@pytest.mark.parametrize(
    ("data", "kind", "words"),
    [
        ({"methods": "grad-cma"}, "MethodError", "did you mean: grad-cam"),
        ({"methods": " , "}, "MethodError", "no method given"),
        ({"layer": "blocks.9"}, "LayerError", "did you mean: blocks."),
        ({"model": "torchvision:resnet9999"}, "ModelError", "did you mean: torchvision:resnet"),
        ({"model": "resnet18"}, "ModelError", "torchvision:resnet18"),
        ({"model": "/etc/passwd"}, "ModelError", "only loads files named when it was started"),
        ({"model": "weights.pt"}, "ModelError", "model file"),
        ({"target": "5000"}, "TargetError", "5000"),
        ({"target": "not a class"}, "TargetError", "not a class"),
        ({"sample": "dgo"}, "ImageError", "unknown sample 'dgo'"),
        ({"top_k": "0"}, "FormError", "top_k: Input should be greater than or equal to 1"),
        ({"colour": "red"}, "FormError", "colour: is not a field of this form"),
        ({"params": "{oops"}, "FormError", "params must be JSON"),
    ],
)
def test_bad_requests_are_422_in_plain_words(client, data, kind, words):
    body = error_of(client.post("/api/explain", data={"sample": "cat", **data}), 422)
    assert body["error"] == kind
    assert words in body["detail"]


def test_image_and_sample_are_checked(client, cat_png):
    body = error_of(client.post("/api/explain", data={"methods": "grad-cam"}), 422)
    assert "no image" in body["detail"] and "/api/samples" in body["detail"]
    files = {"image": ("c.png", cat_png)}
    both = error_of(client.post("/api/explain", data={"sample": "cat"}, files=files), 422)
    assert "not both" in both["detail"]
    json_body = error_of(client.post("/api/explain", json={"sample": "cat"}), 422)
    assert "multipart/form-data" in json_body["detail"]


def test_unknown_model_in_layers_and_sweep(client):
    body = error_of(client.get("/api/layers", params={"model": "torchvision:vgg1"}), 422)
    assert "did you mean: torchvision:vgg" in body["detail"] and "vgg11," in body["detail"]
    body = error_of(client.post("/api/sweep", data={"sample": "cat", "method": "gradient"}), 422)
    assert body["error"] == "MethodError" and "nothing to sweep" in body["detail"]


def test_unknown_routes_are_json_404(client):
    assert error_of(client.get("/api/nope"), 404)["error"] == "NotFound"


# ----------------------------------------------------------------------------- safety


def test_the_server_writes_no_files(client, tmp_path, monkeypatch):
    """A 3 MB upload (above Starlette's 1 MB spool) and every download: no file anywhere."""
    spool, cwd = tmp_path / "tmp", tmp_path / "cwd"
    spool.mkdir()
    cwd.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    monkeypatch.chdir(cwd)
    noise = np.random.default_rng(0).integers(0, 256, (1000, 1000, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG", compress_level=0)
    assert buffer.tell() > 2_000_000
    files = {"image": ("noise.png", buffer.getvalue(), "image/png")}
    body = client.post("/api/explain", files=files, data={"methods": "grad-cam"}).json()
    for link in body["downloads"].values():
        assert client.get(link).status_code == 200
    assert list(spool.iterdir()) == [] and list(cwd.iterdir()) == []


def test_concurrent_requests_never_mix():
    """Requests with different targets, methods and layers at once (6 worker threads on one
    model) get exactly what each gets alone; afterwards no hook is left on the model and its
    mode is restored."""
    with TestClient(create_app(MODEL, weights=None, workers=6)) as busy:
        layers = [r["name"] for r in busy.get("/api/layers").json()["layers"] if r["sweep"]]
        cases = [
            {
                "sample": "cat",
                "target": str(11 * i),
                "methods": "grad-cam,guided-backprop" if i % 2 else "grad-cam",
                "layer": layers[-1 - i % 3],
            }
            for i in range(12)
        ]

        def ask(data):
            response = busy.post("/api/explain", data=data)
            assert response.status_code == 200, response.text
            return response.json()

        alone = [ask(data) for data in cases[:4]]
        with ThreadPoolExecutor(max_workers=12) as pool:
            together = list(pool.map(ask, cases))
        model = busy.app.state.cnnvis.model(None)
    for data, body in zip(cases, together, strict=True):
        assert body["target"]["index"] == int(data["target"])
        assert [m["method"] for m in body["maps"]] == data["methods"].split(",")
        assert body["maps"][0]["layer"] == data["layer"]
    for first, again in zip(alone, together, strict=False):
        for a, b in zip(first["maps"], again["maps"], strict=True):
            diff = np.abs(decode(a["values"]).astype(int) - decode(b["values"]).astype(int))
            assert diff.max() <= 1  # 8-bit display values; measured: identical
    assert len({b["id"] for b in together}) == len(cases)
    assert not any(m._forward_hooks or m._backward_hooks for m in model.module.modules())
    assert not model.module.training


def test_model_cache_loads_once_and_evicts_least_recent():
    calls = []
    gate = threading.Event()

    def load(name, weights):
        calls.append(name)
        gate.wait(5)
        if name == "bad":
            raise ModelError("unknown model 'bad'")
        return cnnvis.LoadedModel(torch.nn.Identity(), name=name)

    cache = ModelCache(load, size=2)
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(cache.get, "a", None) for _ in range(8)]
        gate.set()
        assert len({id(f.result()) for f in futures}) == 1
    assert calls == ["a"]
    cache.get("b", None)
    cache.get("a", None)  # a is now the most recent
    cache.get("c", None)  # evicts b
    assert cache.loaded() == [("a", None), ("c", None)]
    for _ in range(2):
        with pytest.raises(ModelError):
            cache.get("bad", None)
    assert calls == ["a", "b", "c", "bad", "bad"]  # failures are not cached


def test_a_loaded_model_object_can_be_served():
    tiny = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    )
    lm = cnnvis.LoadedModel(tiny, name="tiny", categories=["ant", "bee", "cat"])
    with TestClient(create_app(lm)) as tiny_client:
        assert tiny_client.get("/api/models").json()["default"] == "tiny"
        body = tiny_client.post("/api/explain", data={"sample": "cat", "target": "bee"}).json()
        assert (body["target"]["index"], body["target"]["name"]) == (1, "bee")
        assert body["maps"][0]["layer"] in ("0", "1")


# ----------------------------------------------------------------------------- cnnvis serve


def test_serve_parser_defaults_to_loopback():
    import argparse

    parser = argparse.ArgumentParser()
    serve_command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve"])
    assert (args.host, args.port, args.model, args.max_upload_mb) == (
        "127.0.0.1",
        8000,
        "default",
        20,
    )
    assert serve_command.is_loopback("127.0.0.1") and serve_command.is_loopback("::1")
    assert serve_command.is_loopback("localhost") and not serve_command.is_loopback("0.0.0.0")


def test_serve_refuses_a_taken_port_and_an_unknown_model(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port), "--model", MODEL]) == 1
    assert "cnnvis: error: cannot listen on 127.0.0.1" in capsys.readouterr().err
    assert main(["serve", "--model", "resnet18"]) == ModelError.exit_code
    assert "did you mean: torchvision:resnet18" in capsys.readouterr().err


def test_cnnvis_serve_is_a_command(capsys):
    assert main(["serve", "--help"]) == 0
    assert "127.0.0.1" in capsys.readouterr().out
