from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from reconciler.observability.logs import (
    REDACTED,
    configure_logging,
    log_context,
    register_secret,
)

log = logging.getLogger("acceld.test")


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture
def out(tmp_path: Path) -> Iterator[TextIO]:
    with (tmp_path / "stdout").open("w+", encoding="utf-8") as stream:
        yield stream


def lines(stream: TextIO) -> list[str]:
    stream.flush()
    stream.seek(0)
    return stream.read().splitlines()


def test_text_line_carries_level_logger_message_and_context(out: TextIO) -> None:
    configure_logging("text", stream=out)
    with log_context(reconcile_id="r-1", key="library/web@sha256:ab#estargz"):
        log.info("Converted layer", extra={"layer_bytes": 1234})
    log.info("outside")
    first, second = lines(out)
    assert " level=info logger=acceld.test " in first
    assert 'msg="Converted layer"' in first
    assert "reconcile_id=r-1 key=library/web@sha256:ab#estargz layer_bytes=1234" in first
    assert first.startswith("time=")
    assert "reconcile_id" not in second


def test_json_line_is_one_object_with_context_and_extra_fields(out: TextIO) -> None:
    configure_logging("json", stream=out)
    with log_context(key="p/r@sha256:1#nydus"), log_context(reconcile_id="r-2"):
        log.warning("Backing off %s", "p/r", extra={"delay_seconds": 2.5})
    (line,) = lines(out)
    document = json.loads(line)
    assert document["level"] == "warning"
    assert document["msg"] == "Backing off p/r"
    assert document["key"] == "p/r@sha256:1#nydus"
    assert document["reconcile_id"] == "r-2"
    assert document["delay_seconds"] == 2.5


def test_traceback_stays_on_one_line(out: TextIO) -> None:
    configure_logging("text", stream=out)
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        log.exception("Reconcile failed")
    (line,) = lines(out)
    assert "Traceback (most recent call last):" in line
    assert "RuntimeError: boom" in line


def test_journal_stream_gets_syslog_priority_prefixes(
    out: TextIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    stat = os.fstat(out.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino}")
    configure_logging("text", level=logging.DEBUG, stream=out)
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    log.critical("c")
    assert [line[:3] for line in lines(out)] == ["<7>", "<6>", "<4>", "<3>", "<2>"]


def test_journal_stream_naming_another_file_gets_no_prefix(
    out: TextIO, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    other.write_text("")
    stat = other.stat()
    monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino}")
    configure_logging("text", stream=out)
    log.info("plain")
    (line,) = lines(out)
    assert line.startswith("time=")


def test_registered_secret_is_redacted_wherever_it_appears(out: TextIO) -> None:
    secret = 'hook-"s3cr3t"-value'
    register_secret(secret)
    configure_logging("json", stream=out)
    with log_context(header=secret):
        log.info("got %s", secret, extra={"auth": f"Bearer {secret}"})
    try:
        raise ValueError(f"bad {secret!r}")
    except ValueError:
        log.exception("failed")
    text = "\n".join(lines(out))
    assert "s3cr3t" not in text
    assert text.count(REDACTED) >= 4
    first = json.loads(text.splitlines()[0])
    assert first["auth"] == f"Bearer {REDACTED}"


def test_context_of_one_thread_never_leaks_into_another(out: TextIO) -> None:
    configure_logging("json", stream=out)
    started = threading.Event()
    release = threading.Event()

    def worker() -> None:
        with log_context(key="thread-key"):
            started.set()
            release.wait(5)
            log.info("in worker")

    thread = threading.Thread(target=worker)
    thread.start()
    assert started.wait(5)
    log.info("in main")
    release.set()
    thread.join(5)
    by_message = {doc["msg"]: doc for doc in map(json.loads, lines(out))}
    assert "key" not in by_message["in main"]
    assert by_message["in worker"]["key"] == "thread-key"


def test_unknown_log_format_is_refused(out: TextIO) -> None:
    with pytest.raises(ValueError, match="log format 'xml' is not one of"):
        configure_logging("xml", stream=out)  # type: ignore[arg-type]
