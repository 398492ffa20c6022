"""Progress of an evaluation, counted in forward passes: `progress(done, total, stage)` is called
once before the first pass (done = 0, total announced), after every batch of perturbed inputs,
after each explanation and randomization step, and at the end (done = total)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, str], None]
"""`progress(done, total, stage)`: forward passes done, of `total`; `stage` says what runs, e.g.
"sample:cat: faithfulness"."""


def seconds_left(done: int, total: int, elapsed: float) -> float:
    """The time left at the rate so far (elapsed / done per pass); NaN before the first pass."""
    if done <= 0 or elapsed <= 0:
        return math.nan
    return max(0, total - done) * elapsed / done


class Tracker:
    """Counts forward passes against the planned total and reports them to a callback (none:
    nothing is reported). `total` may be corrected on the way (e.g. a method that could not
    run); `done` only grows, and `finish` ends at done = total."""

    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self.total = total
        self.done = 0
        self.stage = "start"
        self.callback = callback
        self.started = time.perf_counter()
        self._report()

    def begin(self, stage: str) -> None:
        """A new stage starts (reported with the count so far)."""
        self.stage = stage
        self._report()

    def advance(self, passes: int) -> None:
        """`passes` more forward passes are done."""
        self.done += passes
        self.total = max(self.total, self.done)
        self._report()

    def correct(self, difference: int) -> None:
        """The plan turned out `difference` passes off (never below what is done)."""
        self.total = max(self.done, self.total + difference)

    def finish(self) -> None:
        """The run is over: done = total."""
        self.total = self.done
        self.stage = "done"
        self._report()

    def _report(self) -> None:
        if self.callback is not None:
            self.callback(self.done, self.total, self.stage)
