"""The page's waits show real progress from the server and can be cancelled: a request that
names a `progress_id` has its work's stage and done / total at GET /api/progress/{id} while it
runs ("queued" before a worker takes it, "done" after), and an aborted request stops its work."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import httpx
import pytest

from cnnvis.web import create_app

MODEL = "timm:test_efficientnet"


@pytest.fixture(scope="module")
def base_url():
    import uvicorn

    app = create_app(MODEL, weights=None, workers=1)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=15)
    sock.close()


def test_progress_of_a_running_request_then_done(base_url):
    params = json.dumps({"occlusion": {"stride": 8, "window": 16, "batch_size": 2}})
    data = {"sample": "cat", "methods": "occlusion", "params": params, "progress_id": "abcd1234"}
    seen: list[dict] = []
    answer: list[httpx.Response] = []
    with httpx.Client(base_url=base_url, trust_env=False, timeout=120) as client:
        assert client.get("/api/progress/abcd1234").json()["state"] == "unknown"
        worker = threading.Thread(
            target=lambda: answer.append(client.post("/api/explain", data=data))
        )
        worker.start()
        while worker.is_alive():
            seen.append(client.get("/api/progress/abcd1234").json())
            time.sleep(0.05)
        worker.join()
        assert answer[0].status_code == 200, answer[0].text
        final = client.get("/api/progress/abcd1234").json()
    running = [p for p in seen if p["state"] == "running" and p["total"] > 0]
    assert running, seen[-5:]
    assert any(p["stage"].startswith("occlusion") for p in running), running[-3:]
    dones = [p["done"] for p in running if p["stage"].startswith("occlusion")]
    assert dones == sorted(dones)  # it only moves forward
    assert final["state"] == "done"


def test_a_bad_progress_id_is_422(base_url):
    with httpx.Client(base_url=base_url, trust_env=False, timeout=60) as client:
        r = client.post("/api/classify", data={"sample": "cat", "progress_id": "../x"})
    assert r.status_code == 422 and "progress_id" in r.json()["detail"]


def test_a_cancelled_request_frees_the_worker(base_url):
    """The page's Cancel aborts the request: the server stops the work and a classify behind
    it is answered within a few seconds (the occlusion alone would take far longer)."""
    params = json.dumps({"occlusion": {"stride": 4, "window": 8, "batch_size": 1}})
    data = {"sample": "cat", "methods": "occlusion", "params": params, "progress_id": "cancel01"}

    def post() -> None:
        # the client gives up: the connection closes, as an aborted fetch does
        client = httpx.Client(base_url=base_url, trust_env=False, timeout=1.5)
        with client, contextlib.suppress(httpx.TimeoutException):
            client.post("/api/explain", data=data)

    worker = threading.Thread(target=post)
    worker.start()
    worker.join()
    start = time.monotonic()
    with httpx.Client(base_url=base_url, trust_env=False, timeout=60) as client:
        assert client.post("/api/classify", data={"sample": "cat"}).status_code == 200
        state = client.get("/api/progress/cancel01").json()["state"]
    assert time.monotonic() - start < 5
    assert state == "done"  # stopped, not still running
