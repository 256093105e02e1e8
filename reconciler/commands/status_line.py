"""A status line kept at the bottom of a terminal while log lines scroll above it.

Log records and the status share one stream: before a log line is written the status is
erased, after it the status is drawn again, so neither breaks the other.
"""

from __future__ import annotations

import io
import threading
from typing import TextIO

ERASE_LINE = "\r\x1b[K"


class StatusLine(io.TextIOBase):
    """The terminal stream: give it to the log handler, and `show` the status through it."""

    def __init__(self, terminal: TextIO) -> None:
        super().__init__()
        self._terminal = terminal
        self._status = ""
        self._lock = threading.RLock()

    def write(self, text: str) -> int:
        with self._lock:
            if self._status:
                self._terminal.write(ERASE_LINE)
            self._terminal.write(text)
            if self._status and text.endswith("\n"):
                self._terminal.write(self._status)
            self._terminal.flush()
        return len(text)

    def show(self, status: str) -> None:
        """Replace the status line with `status`."""
        with self._lock:
            self._status = status
            self._terminal.write(ERASE_LINE + status)
            self._terminal.flush()

    def done(self) -> None:
        """Leave the last status on screen and move below it."""
        with self._lock:
            if self._status:
                self._terminal.write("\n")
                self._terminal.flush()
            self._status = ""

    def flush(self) -> None:
        self._terminal.flush()

    def fileno(self) -> int:
        return self._terminal.fileno()

    def isatty(self) -> bool:
        return self._terminal.isatty()
