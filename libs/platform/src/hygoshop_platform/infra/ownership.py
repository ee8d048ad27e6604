"""What the local servers share: an exclusive lock on a data dir, and a handle that stops
only what it started (and works as a context manager)."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

log = logging.getLogger(__name__)


class DataDirLock:
    """A non-blocking `flock` on a file: whoever holds it owns the server of a data dir."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """True when we now hold it; False when another process does."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


class StopsWhatItStarted:
    """Mixin of the handles `find_or_start_*` return: `stop()` runs the stopper they were
    given (None when the server was already running), once; `with handle:` stops on exit."""

    _stop: Callable[[], None] | None
    source: str

    def stop(self) -> None:
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()
            log.info("%s (%s) stopped", type(self).__name__, self.source)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
