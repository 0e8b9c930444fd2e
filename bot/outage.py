"""A failure that comes back at every poll while something is away (the database down, a server restarting): its
first time logged with its traceback, then one line a minute while it lasts, and its end said once, so that an
outage of a few minutes is a few lines in the log rather than thousands, and its start and end are easy to find.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

REPEAT_EVERY_SECONDS = 60.0


class Outage:
    """Call `failed()` in the poll's `except` block and `ended()` after a poll that worked."""

    def __init__(self, log: logging.Logger, what: str, *, every: float = REPEAT_EVERY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.what = what  # "looking for pending conversations": what failed, as the log says it
        self.every = every
        self.clock = clock
        self._since: float | None = None  # when it started failing (None: it works)
        self._said = 0.0  # when the log last said it was still failing
        self._failures = 0

    @property
    def failing(self) -> bool:
        return self._since is not None

    def failed(self) -> None:
        """The poll failed (call it while handling the exception)."""
        now = self.clock()
        self._failures += 1
        if self._since is None:
            self._since = self._said = now
            self.log.exception("%s failed; trying again, and saying so once a minute while it fails", self.what)
            return
        if now - self._said >= self.every:
            self._said = now
            error = sys.exc_info()[1]
            self.log.warning("%s still fails (%d times in %.0f s): %s", self.what, self._failures, now - self._since,
                             f"{type(error).__name__}: {error}"[:300] if error is not None else "")

    def ended(self) -> None:
        """The poll worked: an outage under way is over."""
        if self._since is None:
            return
        self.log.warning("%s works again, after %.0f s and %d failures", self.what, self.clock() - self._since,
                         self._failures)
        self._since, self._failures = None, 0
