"""The work queue as the daemon's worker threads see it: a blocking `get` over the key queue.

Waiters wake when this process adds a key; keys that come due, or that another process (a
`backfill` beside `serve`) added, are found by polling the key queue. A heartbeat thread renews
this process's leases and hands back the keys of workers that are gone.
"""

from __future__ import annotations

import logging
import threading
import time

from reconciler.state.clock import Clock
from reconciler.state.keys import Key
from reconciler.state.store import KeyQueue, Lease, StateError

log = logging.getLogger(__name__)


class WorkQueue:
    """`keys` leased to `owner`, one `get` per worker thread.

    `clock` must be the one `keys` was built with: it tells how long until the next key is due.
    """

    def __init__(
        self,
        keys: KeyQueue,
        owner: str,
        clock: Clock,
        *,
        poll_seconds: float = 1.0,
        heartbeat_seconds: float = 15.0,
    ) -> None:
        self.keys = keys
        self.owner = owner
        self._clock = clock
        self.poll_seconds = poll_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self._changed = threading.Condition()
        self._generation = 0
        self._stopping = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def start(self) -> None:
        """Recover what this owner held before a restart, then start the heartbeat."""
        self.keys.recover(self.owner)
        self.keys.release_expired()
        self._heartbeat = threading.Thread(
            target=self._beat, name=f"workqueue-heartbeat-{self.owner}", daemon=True
        )
        self._heartbeat.start()

    def add(
        self, key: Key, due_at: float | None = None, policy_fingerprint: str | None = None
    ) -> None:
        self.keys.add(key, due_at, policy_fingerprint)
        self._wake()

    def get(self, timeout: float) -> Lease | None:
        """The next due key leased to this owner, or None after `timeout` s or on shutdown."""
        deadline = time.monotonic() + timeout
        while not self._stopping.is_set():
            with self._changed:
                seen = self._generation
            leases = self.keys.lease(self.owner, 1)
            if leases:
                return leases[0]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            wait = min(remaining, self.poll_seconds)
            next_due = self.keys.next_due()
            if next_due is not None:
                wait = min(wait, max(next_due - self._clock.now(), 0.0))
            with self._changed:
                if self._generation == seen:
                    self._changed.wait(wait)
        return None

    def shut_down(self) -> None:
        """Wake every waiter with None and stop the heartbeat; leases stay with their workers."""
        self._stopping.set()
        self._wake()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=self.heartbeat_seconds + 5)

    def _wake(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def _beat(self) -> None:
        while not self._stopping.wait(self.heartbeat_seconds):
            # A busy or briefly failing database must not end the heartbeat: the leases it
            # keeps alive would expire and be handed to another worker mid-conversion.
            try:
                self.keys.renew(self.owner)
                released = self.keys.release_expired()
            except StateError as exc:
                log.warning(
                    "lease heartbeat failed", extra={"owner": self.owner, "error": str(exc)}
                )
                continue
            if released:
                self._wake()
