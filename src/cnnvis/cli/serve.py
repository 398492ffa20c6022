"""`cnnvis serve`: the web page and its JSON API under uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..model import LoadedModel
from .common import (
    CommandError,
    add_model_args,
    command_parser,
    load_model,
    positive_int,
    weights,
)

EXAMPLES = """examples:
  cnnvis serve                                       # http://127.0.0.1:8000, the default model
  cnnvis serve --port 8080 --model torchvision:resnet50
  cnnvis serve --model torchvision:resnet18 --weights none --port 0   # random init, free port

  The page: drop an image (or pick a sample), click a prediction to explain it, compare
  methods side by side, sweep the layers, download the figure, the raw maps and a manifest.
  The JSON API is described at /openapi.json. It listens on this computer only unless --host
  says otherwise; there is no login, so think twice before --host 0.0.0.0.
"""
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
ABOUT = "Serve the web page and its JSON API (FastAPI under uvicorn)."


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = command_parser(subparsers, "serve", ABOUT, EXAMPLES)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s, this computer only)",
    )
    p.add_argument(
        "--port", type=int, default=8000, help="port (default: %(default)s; 0 picks a free one)"
    )
    add_model_args(p)
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=20.0,
        help="larger uploads get HTTP 413 (default: %(default)g)",
    )
    p.add_argument(
        "--max-pending-mb",
        type=float,
        default=100.0,
        help="request bodies held in memory at once, being read or waiting for a worker; "
        "more get HTTP 503 (default: %(default)g)",
    )
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        default=50_000_000,
        help="larger images get HTTP 422 before they are decoded (default: %(default)s)",
    )
    p.add_argument(
        "--cache-size", type=positive_int, default=2, help="models kept loaded (default: 2)"
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=2,
        help="requests doing model work at once; the others wait (default: 2)",
    )
    p.add_argument(
        "--allow-model",
        action="append",
        default=[],
        metavar="PATTERN",
        help="a model (fnmatch pattern, e.g. 'torchvision:resnet*') a request may choose "
        "besides the served one; repeatable; hub names never (default: only the served model)",
    )
    p.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="NAME=N",
        help="change a work limit of requests, e.g. steps=512, masks=2000, min_stride=2 "
        "(see /api/limits); repeatable",
    )
    p.add_argument(
        "--max-connections",
        type=positive_int,
        default=100,
        help="open connections at once; more get HTTP 503 (default: %(default)s)",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="a request body must arrive within this time, else HTTP 408 (default: %(default)g)",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="a request's line and headers must arrive within this time, else the connection "
        "is closed (default: %(default)g)",
    )
    p.add_argument(
        "--work-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="model work of one request stops after this, with HTTP 503 (default: %(default)g)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no line per request")
    p.add_argument("--debug", action="store_true", help="debug logs and tracebacks")
    return p


def run(args: argparse.Namespace) -> int:
    """Check the settings, bind the port (a clear error if it is taken), then serve until ^C."""
    try:
        import uvicorn

        from ..web import create_app
    except ImportError as error:
        raise CommandError(
            f"`cnnvis serve` needs the web extra ({error.name or error} is "
            "missing): pip install 'cnnvis[web]'"
        ) from error
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port must be 0-65535, got {args.port}")
    for flag in ("max_upload_mb", "max_pending_mb"):
        if getattr(args, flag) <= 0:
            raise CommandError(f"--{flag.replace('_', '-')} must be more than 0")
    if min(args.body_timeout, args.header_timeout, args.work_timeout) <= 0:
        raise CommandError("--body-timeout, --header-timeout and --work-timeout must be over 0")
    check_model_name(args.model)
    loopback = is_loopback(args.host)
    if not loopback:
        print(
            f"cnnvis: warning: listening on {args.host}: anyone who can reach this computer "
            "can use the page and the API (there is no login)",
            file=sys.stderr,
        )
    app = create_app(
        served_model(args),
        weights=weights(args),
        device=args.device,
        output=args.output,
        max_upload_mb=args.max_upload_mb,
        max_pending_mb=args.max_pending_mb,
        max_pixels=args.max_pixels,
        cache_size=args.cache_size,
        workers=args.workers,
        allowed_hosts=[*LOOPBACK_NAMES, args.host] if loopback else None,
        allow_models=args.allow_model,
        limits=parse_limits(args.limit),
        body_timeout_s=args.body_timeout,
        work_timeout_s=args.work_timeout,
    )
    try:
        sock = bind(args.host, args.port)
    except OSError as error:
        raise CommandError(
            f"cannot listen on {args.host}:{args.port}: "
            f"{error.strerror or error}; choose another --port (or stop what uses it)",
            exit_code=1,
        ) from error
    port = sock.getsockname()[1]
    print(f"cnnvis: serving {args.model} at {url(args.host, port)}  (Ctrl+C stops)", flush=True)
    config = uvicorn_config(app, args)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0


def served_model(args: argparse.Namespace) -> str | LoadedModel:
    """The model to serve: with --trust-model-file a model file is loaded now, in full if need
    be; otherwise the name, loaded when first asked for (model files weights-only)."""
    from ..zoo.names import parse_name

    if args.trust_model_file and parse_name(args.model)[0] == "file":
        return load_model(args)
    return str(args.model)


KEEP_ALIVE_SECONDS = 5  # an idle connection is closed after this
MAX_HEADER_BYTES = 16 * 1024  # an incomplete request line + headers larger than this: 400


def uvicorn_config(app: Any, args: argparse.Namespace) -> Any:
    """uvicorn's settings for `cnnvis serve`: logging, connection limit, keep-alive, header size."""
    import uvicorn

    level = "debug" if args.debug else ("warning" if args.quiet else "info")
    return uvicorn.Config(
        app,
        http=header_timeout_protocol(args.header_timeout),
        log_level=level,
        access_log=not args.quiet,
        timeout_graceful_shutdown=5,
        limit_concurrency=args.max_connections,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )


def header_timeout_protocol(seconds: float) -> type:
    """uvicorn's h11 protocol, closing a connection whose next request line and headers have
    not arrived within `seconds` (uvicorn itself waits for them indefinitely)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._start_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._start_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def _start_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            if self.cycle is not None and not self.cycle.response_complete:
                return  # a pipelined request has already started
            waiting_for = self.cycle  # a new request replaces it once its headers are in
            self._header_timer = self.loop.call_later(seconds, self._headers_too_slow, waiting_for)

        def _headers_too_slow(self, waiting_for: Any) -> None:
            if self.cycle is waiting_for and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


def parse_limits(items: list[str]) -> dict[str, int]:
    """{"steps": 512} from ["steps=512"]; CommandError for a malformed or unknown limit."""
    from ..web.guards import work_limits

    limits: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise CommandError(f"--limit takes NAME=N (e.g. steps=512), got {item!r}")
        limits[name.strip()] = int(value)
    try:
        work_limits(limits)
    except ValueError as error:
        raise CommandError(f"--limit: {error}") from None
    return limits


def check_model_name(name: str) -> None:
    """Refuse an unknown model name at start (ModelError with suggestions), without loading it."""
    from ..zoo.names import MODELS_HINT, NAME_RULE, parse_name
    from ..zoo.timm_loader import check_timm_arch
    from ..zoo.torchvision_loader import torchvision_arch

    source, arch = parse_name(name)
    if source == "torchvision":
        torchvision_arch(arch)
    elif source == "timm":
        check_timm_arch(arch)
    elif source == "file" and not Path(arch).expanduser().is_file():
        raise ModelError(f"model file not found: {arch} ({NAME_RULE})", hint=MODELS_HINT)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def url(host: str, port: int) -> str:
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}/"
