"""Structured logs: one event per line on stdout, key=value or JSON.

The fields of the work in hand (reconcile id, key) come from a context variable, so every line
written while a key is reconciled carries them, whatever module logs. Under systemd (stdout is
the journal stream named by `$JOURNAL_STREAM`) each line starts with its syslog priority
(`<3>`, …) so `journalctl -p` works. Registered secret values are replaced in every line before
it is written, in case one slipped into a message or an exception.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Literal, TextIO

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
REDACTED = "<redacted>"

_context: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "acceld_log_context", default=MappingProxyType({})
)

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add `fields` (e.g. `reconcile_id`, `key`) to every line logged inside the block."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def journal_priority(levelno: int) -> int:
    """The syslog priority of a Python log level (DEBUG 7, INFO 6, WARNING 4, ERROR 3, …)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def stream_is_journal(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """True when `stream` is the journal stream systemd connected (`$JOURNAL_STREAM` dev:inode)."""
    value = environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return (stat.st_dev, stat.st_ino) == (int(device), int(inode))


class SecretRedactor:
    """The secret values to blank out of every log line (thread-safe, process-wide)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._needles: tuple[str, ...] = ()

    def register(self, secret: str) -> None:
        if not secret:
            return
        # A secret may reach a line raw, JSON-escaped or repr-escaped.
        forms = {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1]}
        with self._lock:
            needles = set(self._needles) | forms
            # Longest first, so a secret containing another is replaced whole.
            self._needles = tuple(sorted(needles, key=len, reverse=True))

    def redact(self, line: str) -> str:
        for needle in self._needles:
            if needle in line:
                line = line.replace(needle, REDACTED)
        return line


secrets = SecretRedactor()


def register_secret(secret: str) -> None:
    """Never write `secret` to the logs (call once per secret, as soon as it is read)."""
    secrets.register(secret)


def _fields(record: logging.LogRecord) -> dict[str, object]:
    fields: dict[str, object] = dict(_context.get())
    for name, value in vars(record).items():
        if name not in _RECORD_ATTRIBUTES and not name.startswith("_"):
            fields[name] = value
    return fields


def _exception_text(record: logging.LogRecord) -> str:
    if not record.exc_info:
        return ""
    return "".join(traceback.format_exception(*record.exc_info)).rstrip()


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def _text_value(value: object) -> str:
    text = str(value)
    if text and not any(c.isspace() or c in '"=\\' for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)


class KeyValueFormatter(logging.Formatter):
    """`time=… level=… logger=… msg="…" key=value …` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        pairs: list[tuple[str, object]] = [
            ("time", _timestamp(record)),
            ("level", record.levelname.lower()),
            ("logger", record.name),
            ("msg", record.getMessage()),
            *_fields(record).items(),
        ]
        exception = _exception_text(record)
        if exception:
            pairs.append(("exception", exception))
        # A field with no value (`tag` of a push by digest) is left out, not written as None.
        return " ".join(f"{key}={_text_value(value)}" for key, value in pairs if value is not None)


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        exception = _exception_text(record)
        if exception:
            document["exception"] = exception
        return json.dumps(document, ensure_ascii=False, default=str)


class LineHandler(logging.StreamHandler[TextIO]):
    """Writes each record as one line, redacted, with a journal priority prefix if asked."""

    def __init__(self, stream: TextIO, *, journal: bool, redactor: SecretRedactor) -> None:
        super().__init__(stream)
        self._journal = journal
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        # Messages may hold newlines; a line break would split one event over two journal entries.
        line = super().format(record).replace("\r", "\\r").replace("\n", "\\n")
        line = self._redactor.redact(line)
        if self._journal:
            return f"<{journal_priority(record.levelno)}>{line}"
        return line


def configure_logging(
    log_format: LogFormat = "text",
    level: int = logging.INFO,
    stream: TextIO | None = None,
) -> LineHandler:
    """Send every log record of the process to `stream` (stdout), replacing earlier handlers."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r} is not one of {LOG_FORMATS}")
    out = stream if stream is not None else sys.stdout
    handler = LineHandler(out, journal=stream_is_journal(out), redactor=secrets)
    handler.setFormatter(JsonFormatter() if log_format == "json" else KeyValueFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
