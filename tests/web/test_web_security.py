"""What a request may ask of the web server (issue #15): no cross-site work, only allowed
models (never hub names), and server-side limits on every work-sized parameter."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from cnnvis.cli import serve as serve_command
from cnnvis.cli.common import CommandError
from cnnvis.web import create_app
from cnnvis.web.server import Server

MODEL = "timm:test_efficientnet"
OWN = "http://testserver"


@pytest.fixture
def loads(monkeypatch):
    """Every model the server builds, by name; other models load with random weights."""
    built: list[str] = []
    original = Server._load

    def load(self, name, weights):
        built.append(name)
        return original(self, name, None if name != self.served else weights)

    monkeypatch.setattr(Server, "_load", load)
    return built


@pytest.fixture
def client(loads):
    with TestClient(create_app(MODEL, weights=None, allow_models=["timm:test_*net*"])) as c:
        yield c


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail", "error"} and body["detail"]
    return body


# ----------------------------------------------------------------------------- cross-site


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://localhost:3000"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": OWN},
    ],
)
def test_a_cross_site_form_post_is_403_and_does_no_work(client, loads, headers):
    before = len(client.app.state.cnnvis.results)
    response = client.post("/api/explain", data={"sample": "cat"}, headers=headers)
    body = error_of(response, 403)
    assert body["error"] == "CrossSite" and body["detail"].startswith("refused: ")
    assert "another site" in body["detail"] or "is not this server" in body["detail"]
    assert len(client.app.state.cnnvis.results) == before
    assert loads == []  # not even the served model was built


def test_a_cross_site_layers_request_builds_nothing(client, loads):
    headers = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    error_of(client.get("/api/layers", params={"model": MODEL}, headers=headers), 403)
    assert loads == []


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, scripts
        {"Origin": OWN, "Sec-Fetch-Site": "same-origin"},  # the page itself
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
    ],
)
def test_same_origin_and_headerless_requests_work(client, headers):
    response = client.post("/api/explain", data={"sample": "cat"}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["maps"][0]["method"] == "grad-cam"


def test_the_page_itself_opens_from_a_link_on_another_site(client):
    assert client.get("/", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200


# ----------------------------------------------------------------------------- models


@pytest.mark.parametrize(
    "name", ["torchvision:vit_h_14", "timm:eva02_enormous_patch14_clip_224", "default"]
)
def test_a_model_outside_the_allowlist_is_refused_before_building(client, loads, name):
    start = time.perf_counter()
    body = error_of(client.get("/api/layers", params={"model": name}), 422)
    assert time.perf_counter() - start < 2.0
    assert "not allowed" in body["detail"] and MODEL in body["detail"]
    assert "timm:test_*net*" in body["detail"] and "--allow-model" in body["detail"]
    assert loads == []
    body = error_of(client.post("/api/classify", data={"sample": "cat", "model": name}), 422)
    assert "not allowed" in body["detail"] and loads == []


@pytest.mark.parametrize(
    "name", ["timm:hf-hub:timm/resnet18.a1_in1k", "timm:hf_hub:someone/thing", "hf-hub:x/y"]
)
def test_hub_names_are_never_loaded(client, loads, name):
    body = error_of(client.get("/api/layers", params={"model": name}), 422)
    assert "hub" in body["detail"] and loads == []


def test_hub_names_are_refused_even_when_a_pattern_matches(loads):
    with TestClient(create_app(MODEL, weights=None, allow_models=["*"])) as c:
        body = error_of(c.get("/api/layers", params={"model": "timm:hf-hub:a/b"}), 422)
    assert "hub" in body["detail"] and loads == []


def test_an_allowed_pattern_works(client, loads):
    body = client.get("/api/layers", params={"model": "timm:test_resnet"}).json()
    assert body["model"] == "timm:test_resnet" and loads == ["timm:test_resnet"]
    names = [m["name"] for m in client.get("/api/models").json()["models"]]
    assert names[0] == MODEL and all(n == MODEL or n.startswith("timm:test_") for n in names)


def test_only_the_served_model_by_default(loads):
    with TestClient(create_app(MODEL, weights=None)) as c:
        body = error_of(c.get("/api/layers", params={"model": "timm:test_resnet"}), 422)
        assert f"it allows: {MODEL} (" in body["detail"]
        assert [m["name"] for m in c.get("/api/models").json()["models"]] == [MODEL]
        assert c.get("/api/limits").json()["allow_models"] == [MODEL]
    assert loads == []


# ----------------------------------------------------------------------------- work limits


@pytest.mark.parametrize(
    ("method", "params", "words"),
    [
        ("integrated-gradients", {"steps": 6000}, "steps: 6000 is over this server's limit of 256"),
        ("smoothgrad", {"samples": 5000}, "samples: 5000 is over this server's limit of 256"),
        ("gradient-shap", {"samples": 300}, "samples: 300 is over this server's limit of 256"),
        ("rise", {"masks": 100000}, "masks: 100000 is over this server's limit of 8000"),
        ("rise", {"cells": 1000}, "cells: 1000 is over this server's limit of 64"),
        ("occlusion", {"stride": 1}, "stride: 1 is under this server's minimum of 4"),
        ("occlusion", {"stride": [8, 1]}, "stride: [8, 1] is under this server's minimum of 4"),
        ("score-cam", {"batch_size": 100000}, "batch_size: 100000 is over this server's limit"),
    ],
)
def test_a_request_over_a_work_limit_is_422_naming_it(client, loads, method, params, words):
    data = {"sample": "cat", "methods": method, "params": json.dumps({method: params})}
    body = error_of(client.post("/api/explain", data=data), 422)
    assert body["error"] == "LimitError" and words in body["detail"]
    assert f"params.{method}." in body["detail"] and "--limit" in body["detail"]
    assert loads == []  # refused before the model was even built


def test_limits_can_be_raised_and_lowered(loads):
    with TestClient(create_app(MODEL, weights=None, limits={"steps": 2})) as c:
        assert c.get("/api/limits").json()["work"]["steps"] == 2
        params = json.dumps({"integrated-gradients": {"steps": 3}})
        data = {"sample": "cat", "methods": "integrated-gradients", "params": params}
        assert "limit of 2" in error_of(c.post("/api/explain", data=data), 422)["detail"]
        data["params"] = json.dumps({"integrated-gradients": {"steps": 2}})
        assert c.post("/api/explain", data=data).status_code == 200
    with pytest.raises(ValueError, match="unknown work limit 'stepz'"):
        create_app(MODEL, weights=None, limits={"stepz": 2})


def test_within_the_limits_works(client):
    params = json.dumps({"occlusion": {"stride": 40, "window": 40}})
    data = {"sample": "cat", "methods": "occlusion", "params": params}
    assert client.post("/api/explain", data=data).status_code == 200


def test_a_sweep_over_too_many_layers_is_422(loads):
    with TestClient(create_app(MODEL, weights=None, limits={"sweep_layers": 2})) as c:
        body = error_of(c.post("/api/sweep", data={"sample": "cat", "layers": "all"}), 422)
    assert body["error"] == "LimitError" and "sweep_layers:" in body["detail"]
    assert "limit of 2" in body["detail"]


def test_top_k_has_a_limit(client, loads):
    body = error_of(client.post("/api/classify", data={"sample": "cat", "top_k": "51"}), 422)
    assert "top_k" in body["detail"] and "50" in body["detail"]
    with TestClient(create_app(MODEL, weights=None, limits={"top_k": 3})) as c:
        for route in ("/api/classify", "/api/explain", "/api/sweep"):
            body = error_of(c.post(route, data={"sample": "cat", "top_k": "4"}), 422)
            assert "top_k: 4 is over this server's limit of 3" in body["detail"]
        assert c.post("/api/classify", data={"sample": "cat", "top_k": "3"}).status_code == 200
    assert loads == [MODEL]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ("[" * 100_000 + "]" * 100_000, "characters, over this server's limit"),
        ("[" * 3000 + "]" * 3000, "characters, over this server's limit"),
        ('{"rise": {"a": [[[[1]]]]}}', "nested too deeply"),
        ('{"rise": ' * 600 + "1" + "}" * 600, "characters, over this server's limit"),
    ],
)
def test_deep_or_large_params_are_422_not_500(client, params, words):
    data = {"sample": "cat", "methods": "rise", "params": params}
    body = error_of(client.post("/api/explain", data=data), 422)
    assert words in body["detail"]


def test_deep_params_within_the_size_limit_are_422():
    from cnnvis.web.guards import LimitError, parse_params

    with pytest.raises(LimitError, match="nested too deeply"):
        parse_params("[" * 1500 + "]" * 1500)  # RecursionError inside json
    with pytest.raises(LimitError, match="nested too deeply"):
        parse_params('{"a": {"b": {"c": {"d": {}}}}}')


def test_serve_parses_allow_model_and_limit():
    import argparse

    parser = argparse.ArgumentParser()
    serve_command.add_parser(parser.add_subparsers(dest="command"))
    allow = ["--allow-model", "timm:*", "--allow-model", "torchvision:resnet18"]
    args = parser.parse_args(["serve", *allow, "--limit", "steps=512", "--limit", "min_stride=2"])
    assert args.allow_model == ["timm:*", "torchvision:resnet18"]
    assert serve_command.parse_limits(args.limit) == {"steps": 512, "min_stride": 2}
    for bad in (["steps"], ["steps=x"], ["stepz=2"]):
        with pytest.raises(CommandError):
            serve_command.parse_limits(bad)


# ----------------------------------------------------------------------------- connections


@pytest.fixture(scope="module")
def served():
    """`cnnvis serve`'s uvicorn settings (3 connections, 1 s for headers and for a body) on a
    free port."""
    import argparse
    import threading

    import uvicorn

    parser = argparse.ArgumentParser()
    serve_command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "serve",
            "--max-connections",
            "3",
            "--body-timeout",
            "1",
            "--header-timeout",
            "1",
            "-q",
            "--workers",
            "1",
        ]
    )
    app = create_app(MODEL, weights=None, body_timeout_s=args.body_timeout, workers=args.workers)
    config = serve_command.uvicorn_config(app, args)
    assert (config.limit_concurrency, config.timeout_keep_alive) == (3, 5)
    assert config.h11_max_incomplete_event_size == serve_command.MAX_HEADER_BYTES
    sock = serve_command.bind("127.0.0.1", 0)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(timeout=15)
    sock.close()


def _connect(port: int):
    import socket

    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    return conn


def _answer(conn) -> bytes:
    data = b""
    try:
        while chunk := conn.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    return data


def _one_response(conn) -> bytes:
    """One whole response (headers and a Content-Length body) from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    while len(body) < length:
        body += conn.recv(65536)
    return data


def test_a_slow_body_gets_408_within_the_body_timeout(served):
    conn = _connect(served)
    head = (
        "POST /api/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    )
    conn.sendall(head.encode())
    start = time.monotonic()
    answer = b""
    for _ in range(20):  # one byte every 0.25 s: 5 s for the whole body if it were let
        try:
            conn.sendall(b"s")
        except OSError:
            break
        conn.settimeout(0.25)
        try:
            answer += conn.recv(65536)
        except TimeoutError:
            continue
        if answer:
            break
    conn.settimeout(5)
    answer += _answer(conn)
    conn.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"did not arrive within 1 s" in answer
    assert time.monotonic() - start < 3


def test_huge_incomplete_headers_are_refused(served):
    conn = _connect(served)
    conn.sendall(b"GET /api/limits HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Junk: " + b"a" * 40_000)
    answer = _answer(conn)
    conn.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


def test_connections_over_the_limit_get_503(served):
    idle = [_connect(served) for _ in range(3)]
    for conn in idle:
        conn.sendall(b"GET /api/limits HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
    time.sleep(0.2)
    extra = _connect(served)
    extra.sendall(b"GET /api/limits HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    answer = _answer(extra)
    for conn in [*idle, extra]:
        conn.close()
    assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
    time.sleep(0.2)
    again = _connect(served)
    again.sendall(b"GET /api/limits HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert _answer(again).startswith(b"HTTP/1.1 200")
    again.close()


def test_slow_headers_are_cut_off_and_keep_alive_still_works(served):
    conn = _connect(served)
    conn.sendall(b"GET /api/limits HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
    start = time.monotonic()
    assert _answer(conn) == b""  # closed by the server
    assert 0.8 < time.monotonic() - start < 3
    conn.close()
    conn = _connect(served)
    for _ in range(3):  # requests on one connection, each sent within the header timeout
        conn.sendall(b"GET /api/limits HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        conn.settimeout(5)
        assert _one_response(conn).startswith(b"HTTP/1.1 200")
        time.sleep(0.6)
    conn.close()


def test_a_request_running_longer_than_the_header_timeout_is_answered(served):
    conn = _connect(served)
    params = json.dumps({"occlusion": {"stride": 4, "window": 8}})
    body = f"sample=cat&methods=occlusion&params={params}".encode()
    head = (
        "POST /api/explain HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    start = time.monotonic()
    conn.sendall(head.encode() + body)
    conn.settimeout(60)
    answer = _answer(conn)
    conn.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert time.monotonic() - start > 1.0  # longer than the header timeout


SLOW = json.dumps({"occlusion": {"stride": 4, "window": 8, "batch_size": 1}})  # ~1500 forwards


def _post(port: int, path: str, form: str):
    conn = _connect(port)
    body = form.encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    conn.sendall(head.encode() + body)
    return conn


def test_work_stops_when_its_client_disconnects(served):
    """One worker; two slow requests hang up after 0.5 s; a classify behind them is answered
    within a second or two of the hang-up (measured: ~0.3 s; without stopping: minutes)."""
    slow = [_post(served, "/api/explain", f"sample=cat&methods=occlusion&params={SLOW}")]
    slow.append(_post(served, "/api/explain", f"sample=cat&methods=occlusion&params={SLOW}"))
    time.sleep(0.5)
    for conn in slow:
        conn.close()
    start = time.monotonic()
    conn = _post(served, "/api/classify", "sample=cat")
    conn.settimeout(30)
    answer = _answer(conn)
    conn.close()
    latency = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert latency < 2.5, f"classify took {latency:.1f} s after the slow clients hung up"


def test_work_over_the_time_limit_stops_with_503():
    with TestClient(create_app(MODEL, weights=None, work_timeout_s=0.5)) as c:
        start = time.monotonic()
        data = {"sample": "cat", "methods": "occlusion", "params": SLOW}
        body = error_of(c.post("/api/explain", data=data), 503)
        assert time.monotonic() - start < 3
        assert body["error"] == "Stopped" and "longer than this server's 0.5 s" in body["detail"]
        assert c.post("/api/classify", data={"sample": "cat"}).status_code == 200
        model = c.app.state.cnnvis.model(None)
        left = [
            m
            for m in model.module.modules()
            if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
        ]
        assert not left, "the served model keeps hooks between requests"
