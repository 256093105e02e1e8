"""The systemd notify protocol, without libsystemd.

One datagram of `KEY=VALUE` lines to the unix socket named by `$NOTIFY_SOCKET` (a leading `@`
names an abstract socket). Outside systemd the variable is unset and every call does nothing.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping


def notify(*fields: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send `fields` as one message; False when there is no notify socket to send to."""
    address = environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    message = "\n".join(fields).encode("utf-8")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(message)
    return True


def ready(status_text: str = "") -> bool:
    """The service is up: config loaded, listener bound, workers and scheduler started."""
    fields = ["READY=1"]
    if status_text:
        fields.append(_status_field(status_text))
    return notify(*fields)


def status(text: str) -> bool:
    """A one-line human status shown by `systemctl status`."""
    return notify(_status_field(text))


def watchdog() -> bool:
    """Still healthy: call at least every `watchdog_interval()` seconds."""
    return notify("WATCHDOG=1")


def reloading() -> bool:
    """A reload (SIGHUP) started; send `ready()` when it is done."""
    # systemd matches the reload to this message by the monotonic clock; without it newer
    # versions ignore RELOADING=1.
    return notify(
        "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
    )


def stopping() -> bool:
    """Shutdown started (SIGTERM)."""
    return notify("STOPPING=1")


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between two `watchdog()` calls (half the unit's WatchdogSec), or None if off.

    `$WATCHDOG_PID`, when set, names the process the watchdog is meant for; a child that
    inherited the environment must not ping.
    """
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = environ.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2_000_000


def _status_field(text: str) -> str:
    return "STATUS=" + " ".join(text.split())
