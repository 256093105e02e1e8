"""Keeping a leader lease while this process lives: which host runs the scheduled scans.

Every process of the service runs one election per name; a background thread takes or renews
the lease every `renew_seconds`, well inside `lease_seconds`. While the holder lives nobody else
gets it; when it dies (or its database connection does) the lease runs out and the next
process to try takes it, so scans stop for at most one lease period.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from reconciler.state.store import LeaderLeases, StateError

log = logging.getLogger(__name__)


class LeaderElection:
    """`holder`'s claim on the lease `name` in `leases`; `leading()` says whether it holds it.

    `on_lead` runs each time the holder takes the lease (from the renewing thread): a new
    scan leader scans at once instead of at its next scheduled time.
    """

    def __init__(
        self,
        leases: LeaderLeases,
        name: str,
        holder: str,
        *,
        lease_seconds: float = 60.0,
        renew_seconds: float = 15.0,
        on_lead: Callable[[], None] | None = None,
    ) -> None:
        if not 0 < renew_seconds < lease_seconds:
            raise ValueError(
                f"renew_seconds must be within (0, lease_seconds), got {renew_seconds} "
                f"and {lease_seconds}"
            )
        self.name = name
        self.holder = holder
        self._leases = leases
        self._lease_seconds = lease_seconds
        self._renew_seconds = renew_seconds
        self._on_lead = on_lead
        self._leading = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def leading(self) -> bool:
        return self._leading

    def step(self) -> bool:
        """Take or renew the lease once; whether this holder leads now.

        A database error counts as not leading: a holder that cannot renew must assume another
        takes over once its lease runs out.
        """
        try:
            leading = self._leases.hold(self.name, self.holder, self._lease_seconds)
        except StateError as exc:
            log.warning("leader lease not renewed", extra={"lease": self.name, "error": str(exc)})
            leading = False
        if leading != self._leading:
            log.info(
                "leading" if leading else "not leading",
                extra={"lease": self.name, "holder": self.holder},
            )
        gained = leading and not self._leading
        self._leading = leading
        if gained and self._on_lead is not None:
            self._on_lead()
        return leading

    def start(self) -> None:
        self.step()
        self._thread = threading.Thread(target=self._run, name=f"leader-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing and give the lease up, so another process need not wait it out."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self._renew_seconds + 5)
        if self._leading:
            self._leading = False
            try:
                self._leases.give_up(self.name, self.holder)
            except StateError as exc:
                log.warning(
                    "leader lease not given up", extra={"lease": self.name, "error": str(exc)}
                )

    def _run(self) -> None:
        while not self._stopping.wait(self._renew_seconds):
            self.step()
