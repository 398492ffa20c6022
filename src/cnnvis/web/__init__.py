"""The local web page and its JSON API: `cnnvis serve`, or `create_app()` under any ASGI server.

    from cnnvis.web import create_app
    app = create_app(model_name="torchvision:resnet18", weights=None)   # uvicorn.run(app)

Needs the `web` extra (FastAPI, uvicorn, python-multipart): pip install 'cnnvis[web]'.
"""

from __future__ import annotations

try:
    from .app import create_app
    from .server import ServerConfig
except ImportError as error:  # pragma: no cover - depends on the installed extras
    if error.name not in ("fastapi", "starlette", "multipart", "python_multipart", "pydantic"):
        raise
    raise ImportError(
        f"cnnvis.web needs the 'web' extra ({error.name} is missing): pip install 'cnnvis[web]'"
    ) from error

__all__ = ["ServerConfig", "create_app"]
