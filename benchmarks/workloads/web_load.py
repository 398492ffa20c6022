"""Issue 15: `cnnvis serve` under hostile load: does a normal client's classify stay fast?

A real server process on loopback (`python -m cnnvis serve`, the default model, 2 workers).
Phase "fair": 40 clients each ask for classify, wait 10 s, and ask again (a page's users);
phase "hostile": the same 40, plus 10 others: 5 that send their body one byte every 2 s
(held off by the body timeout, here 3 s) and 5 that ask for heavy occlusion work (about 1500
forwards, tens of seconds), hang up after 1 s, wait 4 s and ask again: their work must stop
when they go, or the workers stay busy for minutes. One more client, the "normal" one, sends
classify requests one after another in both phases; its latency is the measure. Gated: its
95th-percentile latency in the hostile phase <= 3 s; reported: the median and 95th percentile
of both phases, their ratio, and the latency alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from ..common import Row, Target, log
from . import register

FAIR_CLIENTS = 40
HOSTILE_CLIENTS = 10
PHASE_S = 20.0
QUICK_PHASE_S = 10.0
THINK_S = 10.0
HANG_UP_PAUSE_S = 4.0
HOSTILE_P95_S = 3.0
HEAVY = json.dumps({"occlusion": {"stride": 4, "window": 8, "batch_size": 1}})


def _start_server() -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "cnnvis", "serve", "--port", "0", "--quiet"]
    command += ["--workers", "2", "--body-timeout", "3", "--max-connections", "200"]
    process = subprocess.Popen(
        command,
        cwd=tempfile.mkdtemp(prefix="cnnvis-web-bench-"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline() if process.stdout else ""
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if match:
            return process, match.group(1)
        if process.poll() is not None:
            break
    process.kill()
    raise RuntimeError("the server did not start")


async def _request(port: str, body: bytes, path: str = "/api/classify") -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", int(port))
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        status = await reader.readline()
        await reader.read()
        return int(status.split()[1]) if status else 0
    finally:
        writer.close()


async def _classify_loop(
    port: str, until: float, latencies: list[float] | None, think: float = 0.0
) -> None:
    """Classify again and again, `think` seconds apart (after a random first wait)."""
    if think:
        await asyncio.sleep(random.uniform(0, think))
    while time.monotonic() < until:
        start = time.monotonic()
        status = await _request(port, b"sample=cat&top_k=3")
        if latencies is not None and status == 200:
            latencies.append(time.monotonic() - start)
        await asyncio.sleep(think)


async def _slow_body(port: str, until: float) -> None:
    """Promise 100 bytes and send one every 2 s, again and again."""
    while time.monotonic() < until:
        reader, writer = await asyncio.open_connection("127.0.0.1", int(port))
        writer.write(
            b"POST /api/classify HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
        )
        try:
            while time.monotonic() < until:
                writer.write(b"s")
                await writer.drain()
                await asyncio.sleep(2)
                if reader.at_eof():
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


async def _hang_up(port: str, until: float) -> None:
    """Ask for heavy work, hang up after 1 s, wait 4 s, again."""
    body = f"sample=cat&methods=occlusion&params={HEAVY}".encode()
    await asyncio.sleep(random.uniform(0, HANG_UP_PAUSE_S))
    while time.monotonic() < until:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_request(port, body, "/api/explain"), 1.0)
        await asyncio.sleep(HANG_UP_PAUSE_S)


async def _phase(port: str, seconds: float, hostile: bool) -> list[float]:
    until = time.monotonic() + seconds
    latencies: list[float] = []
    tasks = [_classify_loop(port, until, latencies)]
    tasks += [_classify_loop(port, until, None, THINK_S) for _ in range(FAIR_CLIENTS)]
    if hostile:
        tasks += [_slow_body(port, until) for _ in range(HOSTILE_CLIENTS // 2)]
        tasks += [_hang_up(port, until) for _ in range(HOSTILE_CLIENTS - HOSTILE_CLIENTS // 2)]
    await asyncio.gather(*tasks)
    return latencies


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


@register(
    "web-load",
    "cnnvis serve: a normal client's classify with 40 fair and 10 slow/hanging-up clients",
    quick=False,
)
def web_load(ctx) -> list[Row]:
    seconds = QUICK_PHASE_S if ctx.quick else PHASE_S
    process, port = _start_server()
    try:
        alone: list[float] = []
        for _ in range(8):  # the first ones warm the model
            start = time.monotonic()
            asyncio.run(_request(port, b"sample=cat&top_k=3"))
            alone.append(time.monotonic() - start)
        alone = alone[3:]
        fair = asyncio.run(_phase(port, seconds, hostile=False))
        hostile = asyncio.run(_phase(port, seconds, hostile=True))
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    if not fair or not hostile:
        raise RuntimeError(f"no classify answered: fair {len(fair)}, hostile {len(hostile)}")
    fair_median, hostile_median = statistics.median(fair), statistics.median(hostile)
    log(
        f"web-load: classify alone {statistics.median(alone):.3f} s; fair {fair_median:.3f} s "
        f"(p95 {_p95(fair):.3f}, n={len(fair)}); hostile {hostile_median:.3f} s "
        f"(p95 {_p95(hostile):.3f}, n={len(hostile)})"
    )
    name = "web-load"
    return [
        Row(name, "classify alone", statistics.median(alone), gate=False, note="median latency"),
        Row(
            name,
            "classify, 40 fair clients",
            fair_median,
            value=_p95(fair),
            gate=False,
            note=f"median latency; value: p95; n={len(fair)}",
        ),
        Row(
            name,
            "classify, +10 slow/hanging-up",
            hostile_median,
            value=_p95(hostile),
            gate=False,
            note=f"median latency; value: p95; n={len(hostile)}",
        ),
        Row(
            name,
            "hostile / fair (median)",
            None,
            value=hostile_median / fair_median,
            gate=False,
        ),
        Row(
            name,
            "classify p95, hostile phase",
            None,
            value=_p95(hostile),
            target=Target("p95 latency s", "<=", HOSTILE_P95_S),
        ),
    ]
