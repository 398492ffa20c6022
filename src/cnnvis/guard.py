"""Leave the user's model exactly as it was: eval mode while we use it, everything restored."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """One re-entrant lock per model object: recorded forwards on one model never interleave."""
    with _LOCKS_LOCK:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextmanager
def model_state_guard(model: nn.Module) -> Iterator[nn.Module]:
    """Hold the model's lock, switch it to eval mode, and put every module's `training` flag
    back on exit — also when the body raises (the exception is never swallowed)."""
    with model_lock(model):
        modes = [(m, m.training) for m in model.modules()]
        try:
            model.eval()
            yield model
        finally:
            for module, training in modes:
                module.training = training
