"""Progress of a run: the tqdm bar (images/s, ETA) and the counts the summary reports."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Counts:
    done: int = 0  # explained in this run, every map written
    skipped: int = 0  # already done for these settings (same content hash)
    failed: int = 0  # unreadable, not an image, or a method failed on it
    failures: list[tuple[str, str]] = field(default_factory=list)  # (file, why), in order


class Progress:
    """Counts outcomes and shows them on a tqdm bar on stderr (when `show`)."""

    def __init__(self, total: int, show: bool | None, desc: str = "explaining"):
        self.counts = Counts()
        self.start = time.perf_counter()
        self.total, self.show, self.desc = total, show, desc
        self.bar = None  # made at the first count: no tqdm thread before workers are forked

    def _make_bar(self):
        from tqdm import tqdm

        return tqdm(
            total=self.total,
            desc=self.desc,
            unit="img",
            file=sys.stderr,
            disable=None if self.show is None else not self.show,  # None: only on a terminal
            dynamic_ncols=True,
            smoothing=0.1,
        )

    def count(self, done: int = 0, skipped: int = 0, failed: int = 0) -> None:
        c = self.counts
        c.done, c.skipped, c.failed = c.done + done, c.skipped + skipped, c.failed + failed
        if self.bar is None and self.show is not False and self.total:
            self.bar = self._make_bar()
        if self.bar is not None:
            self.bar.set_postfix(done=c.done, skipped=c.skipped, failed=c.failed, refresh=False)
            self.bar.update(done + skipped + failed)

    def fail(self, source: str, error: str) -> None:
        """One image failed: counted, kept for the summary, and said now (a warning naming
        the file, so a long run shows which file failed while it goes on)."""
        self.counts.failures.append((source, error))
        log.warning("%s: %s", source, error)
        self.count(failed=1)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
