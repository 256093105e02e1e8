from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.service import sd_notify


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_with_status_is_one_datagram(notify_socket: socket.socket) -> None:
    assert sd_notify.ready("queue=0 workers=2")
    assert received(notify_socket) == ["READY=1", "STATUS=queue=0 workers=2"]


def test_status_is_folded_onto_one_line(notify_socket: socket.socket) -> None:
    assert sd_notify.status("scan running\nqueue=3")
    assert received(notify_socket) == ["STATUS=scan running queue=3"]


def test_watchdog_and_stopping(notify_socket: socket.socket) -> None:
    sd_notify.watchdog()
    sd_notify.stopping()
    assert received(notify_socket) == ["WATCHDOG=1"]
    assert received(notify_socket) == ["STOPPING=1"]


def test_reloading_carries_the_current_monotonic_time(notify_socket: socket.socket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    sd_notify.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    reloading, monotonic = received(notify_socket)
    assert reloading == "RELOADING=1"
    name, _, value = monotonic.partition("=")
    assert name == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_abstract_socket_address_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"acceld-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sd_notify.ready()
        assert received(sock) == ["READY=1"]


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sd_notify.ready()
    assert not sd_notify.watchdog()


def test_watchdog_interval_is_half_the_period_for_this_process() -> None:
    pid = str(os.getpid())
    assert sd_notify.watchdog_interval({"WATCHDOG_USEC": "120000000"}) == 60.0
    assert sd_notify.watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": pid}) == 15.0


def test_watchdog_interval_is_off_when_unset_zero_or_meant_for_another_process() -> None:
    assert sd_notify.watchdog_interval({}) is None
    assert sd_notify.watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert sd_notify.watchdog_interval({"WATCHDOG_USEC": "junk"}) is None
    other = str(os.getpid() + 1)
    assert sd_notify.watchdog_interval({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": other}) is None
