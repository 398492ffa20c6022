"""The run lock: one batch run writes into an output folder at a time.

`held(out)` takes an exclusive `flock` on OUT/.lock for the run. A flock belongs to the open
file, so processes forked while it is held (the DataLoader's decoding workers) would keep it
alive after the run itself dies — a run killed with SIGKILL could then not be resumed until
they noticed and exited. `release_in_worker` (the loaders' `worker_init_fn`) closes the
inherited descriptor in every such child, so the lock dies with the run's own process.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ..errors import CnnvisError

_HELD: set[int] = set()  # descriptors of the locks this process holds


@contextmanager
def held(out: Path) -> Iterator[None]:
    """Hold OUT/.lock for the run: two runs into one folder would mix their part files."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "a") as lock:  # "a": a file of that name is never truncated
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise CnnvisError(
                f"another cnnvis batch run is writing to {out}; wait for it or use another --out"
            ) from None
        _HELD.add(lock.fileno())
        try:
            yield
        finally:
            _HELD.discard(lock.fileno())
            fcntl.flock(lock, fcntl.LOCK_UN)


def release_in_worker(_worker_id: int = 0) -> None:
    """In a forked worker: close the inherited run-lock descriptors (the lock stays the
    parent's; it is released when the parent closes its own or dies)."""
    for fd in list(_HELD):
        with suppress(OSError):
            os.close(fd)
    _HELD.clear()
