"""Request forms: size-limited, parsed in memory (nothing is spooled to disk), then validated.

The forms are plain pydantic models; their JSON schema is what the OpenAPI document shows as
the request body, so the documentation and the validation cannot drift apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

try:  # the form parser Starlette needs (python-multipart), imported up front: a clear error
    import python_multipart  # noqa: F401
except ImportError:  # releases before 0.0.13 are imported as `multipart`
    import multipart  # noqa: F401
from starlette.datastructures import UploadFile
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import Request

FIELD_BYTES = 64 * 1024  # room for the text fields and the multipart framing
MAX_FIELDS = 32

F = TypeVar("F", bound=BaseModel)


class RequestTooLarge(Exception):
    """The request body is over the server's upload limit (answered with 413)."""

    def __init__(self, size: int | None, limit: int, unread: bool = True) -> None:
        self.size, self.limit = size, limit
        self.unread = unread  # the rest of the body is still on the wire
        got = f" ({size / 1e6:.1f} MB)" if size is not None else ""
        super().__init__(
            f"the upload{got} is over this server's limit of {limit / 1e6:g} MB; downscale or "
            "re-compress the image (or start the server with a larger --max-upload-mb)"
        )


class RequestTimeout(Exception):
    """The request body did not arrive within the server's time limit (answered with 408)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"the request body did not arrive within {seconds:g} s; send it again on a faster "
            "connection (or start the server with a larger --body-timeout)"
        )


class FormError(Exception):
    """A form that is not well formed or does not validate (answered with 422)."""


class Upload(BaseModel):
    """An uploaded file, held in memory."""

    filename: str
    data: bytes


class ImageForm(BaseModel):
    """The picture: an uploaded file or the name of a bundled sample."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    image: bytes | None = Field(
        None,
        description="an image file (PNG, JPEG, WebP, ...); give this or `sample`",
        json_schema_extra={"type": "string", "format": "binary"},
    )
    sample: str | None = Field(
        None, description="a bundled sample instead of a file, e.g. `cat` (see /api/samples)"
    )
    model: str | None = Field(
        None, description="model name (see /api/models); empty: the server's model"
    )
    progress_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{8,64}$",
        description="a name the client chose for this request: GET /api/progress/{progress_id} "
        "tells how far its work is while it runs",
    )


class ClassifyForm(ImageForm):
    top_k: int = Field(5, ge=1, le=50, description="how many classes to return")


class ExplainForm(ImageForm):
    methods: str = Field("grad-cam", description="comma-separated method names (see /api/methods)")
    layer: str | None = Field(
        None, description="layer for CAM methods (see /api/layers); empty or `auto`: the default"
    )
    target: str | None = Field(
        None,
        description="class to explain: empty or `top1` (the best), an index such as 285, or a "
        "class name",
    )
    top_k: int = Field(5, ge=1, le=50, description="predictions to return")
    params: str | None = Field(
        None,
        description='method parameters as JSON, e.g. {"integrated-gradients": {"steps": 16}}',
    )


class SweepForm(ImageForm):
    method: str = Field("grad-cam", description="a method that takes a layer (see /api/methods)")
    layers: str = Field(
        "all",
        description="`all` (every block along the main path), a glob such as `blocks.*`, or "
        "comma-separated names",
    )
    target: str | None = Field(None, description="as for /api/explain")
    top_k: int = Field(5, ge=1, le=50, description="predictions to return")


def request_body(form: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI `requestBody` of a form route (multipart; urlencoded without a file)."""
    schema = form.model_json_schema()
    for prop in schema.get("properties", {}).values():  # `bytes | None` -> one binary string
        if prop.get("format") == "binary":
            prop.pop("anyOf", None)
    urlencoded = {**schema, "properties": dict(schema.get("properties", {}))}
    urlencoded["properties"].pop("image", None)
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": schema},
                "application/x-www-form-urlencoded": {"schema": urlencoded},
            },
        }
    }


async def _limited(
    request: Request, limit: int, seconds: float | None = None
) -> AsyncGenerator[bytes, None]:
    """The request body, chunk by chunk, stopping with RequestTooLarge past `limit` bytes and
    with RequestTimeout when the whole body has not arrived within `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = None if seconds is None else loop.time() + seconds
    chunks = request.stream().__aiter__()
    total = 0
    while True:
        try:
            if deadline is None:
                chunk = await chunks.__anext__()
            else:
                chunk = await asyncio.wait_for(chunks.__anext__(), deadline - loop.time())
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise RequestTimeout(seconds or 0) from None
        total += len(chunk)
        if total > limit:
            raise RequestTooLarge(None, limit)
        yield chunk


def body_size(request: Request, max_upload: int) -> int:
    """The most memory a request's body can take: its Content-Length, or the upload limit
    (plus room for the fields) for a body without one (chunked)."""
    limit = max_upload + FIELD_BYTES
    length = request.headers.get("content-length", "")
    return min(int(length), limit) if length.isdigit() else limit


async def read_form(
    request: Request, form: type[F], max_upload: int, body_seconds: float | None = None
) -> tuple[F, Upload | None]:
    """Parse and validate a form; the file part (if any) comes back separately, in memory.

    Bodies over `max_upload` (plus room for the fields) are refused from their Content-Length
    before anything is read, or as soon as the stream passes the limit; a body that has not
    arrived within `body_seconds` gets RequestTimeout.
    """
    limit = max_upload + FIELD_BYTES
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise RequestTooLarge(int(length), max_upload)
    content_type = request.headers.get("content-type", "")
    stream = _limited(request, limit, body_seconds)
    try:
        if content_type.startswith("multipart/form-data"):
            parser = MultiPartParser(
                request.headers,
                stream,
                max_files=1,
                max_fields=MAX_FIELDS,
                max_part_size=FIELD_BYTES,
            )
            parser.spool_max_size = limit + 1  # keep the file in memory: the server writes nothing
            data = await parser.parse()
        elif content_type.startswith("application/x-www-form-urlencoded") or not content_type:
            data = await FormParser(request.headers, stream).parse()
        else:
            raise FormError(
                f"send the form as multipart/form-data (or urlencoded), not {content_type!r}"
            )
    except RequestTooLarge as error:
        raise RequestTooLarge(None, error.limit - FIELD_BYTES) from None
    except MultiPartException as error:
        raise FormError(f"the form could not be read: {error}") from None
    fields: dict[str, Any] = {}
    upload = None
    for key, value in data.multi_items():
        if isinstance(value, UploadFile):
            content = await value.read()
            await value.close()
            if len(content) > max_upload:
                raise RequestTooLarge(len(content), max_upload, unread=False)
            upload = Upload(filename=value.filename or "upload", data=content)
            continue
        if key in fields:
            raise FormError(f"the field {key!r} was given more than once")
        if value != "":
            fields[key] = value
    if upload is not None and "image" in fields:
        raise FormError("the field 'image' must be a file upload")
    try:
        parsed = form.model_validate(fields)
    except ValidationError as error:
        raise FormError(plain_errors(error)) from None
    return parsed, upload


def plain_errors(error: ValidationError) -> str:
    """'top_k: Input should be greater than or equal to 1; ...' from a pydantic error."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "form"
        message = item.get("msg", "is not valid")
        if item.get("type") == "extra_forbidden":
            message = "is not a field of this form"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)
