"""Progress of long work, reported to whoever listens: `reporting(callback)` around a call.

The library never draws a bar itself (that is a front end's choice): the work that can take a
while says how far it is with `report(stage, done, total)`, and a callback installed with
`reporting` hears it (the command line draws a bar on a terminal, a line per stage elsewhere).
Stages: "maps" (the method x layer maps of one `explain_many`, counted as they are done), a
method's own passes under its name ("score-cam @ bn2": rows of masked inputs, integrated
gradients' path points, RISE's masks, ...; from `methods._batching.chunks`), and "features"
(feature visualization's steps). Without a callback `report` costs one context-variable read.

    from cnnvis.progress import reporting
    with reporting(lambda stage, done, total: print(stage, done, total)):
        cnnvis.explain(model, image, "score-cam")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Callback = Callable[[str, int, int], None]
"""`callback(stage, done, total)`: `done` of `total` units of `stage` are finished."""

_CALLBACK: ContextVar[Callback | None] = ContextVar("cnnvis_progress", default=None)
_STAGE: ContextVar[str] = ContextVar("cnnvis_progress_stage", default="work")


@contextmanager
def reporting(callback: Callback | None) -> Iterator[None]:
    """Send the progress of the work inside the block to `callback` (None: to nobody)."""
    token = _CALLBACK.set(callback)
    try:
        yield
    finally:
        _CALLBACK.reset(token)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Name the stage that `report_current` reports inside the block (e.g. the method)."""
    token = _STAGE.set(name)
    try:
        yield
    finally:
        _STAGE.reset(token)


def listening() -> bool:
    """Whether a callback is installed (work can skip preparing a report otherwise)."""
    return _CALLBACK.get() is not None


def report(name: str, done: int, total: int) -> None:
    """`done` of `total` units of stage `name` are finished."""
    callback = _CALLBACK.get()
    if callback is not None:
        callback(name, done, total)


def report_current(done: int, total: int) -> None:
    """`report` under the name `stage` gave the surrounding work."""
    report(_STAGE.get(), done, total)
