"""What the daemon keeps between runs: parts over one database, each behind a Protocol.

The key queue follows client-go's rate-limited queue: a key is pending at most once, is leased
to at most one worker at a time (across threads, processes and hosts), and a key added while
leased is marked dirty and becomes pending again when its worker finishes. The layer cache, the
classification cache, the scan marks and the leader leases are independent of it; each user
takes only the part it needs. Times are Unix seconds from the `Clock` a backend is built with.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from harbor_api.errors import AcceldError
from harbor_api.oci import Descriptor
from reconciler.state.keys import Key


class StateError(AcceldError):
    """The state store cannot be opened or used (missing, corrupt, or from a newer acceld)."""


@dataclass(frozen=True)
class Lease:
    """A key handed to one worker until `expires_at` (renewed by the worker's heartbeat)."""

    key: Key
    owner: str
    token: str
    """Identifies this lease; a finished worker whose token no longer matches lost the key."""
    reconcile_id: str
    attempts: int
    """Consecutive failures before this attempt."""
    policy_fingerprint: str | None
    leased_at: float
    expires_at: float


@dataclass(frozen=True)
class QueueCounts:
    pending: int
    """Waiting keys, including those backing off after a failure."""
    in_progress: int
    quarantined: int


@dataclass(frozen=True)
class KeyState:
    """Where one key stands in the queue."""

    key: Key
    state: Literal["pending", "leased", "quarantined"]
    due_at: float
    """When a pending key comes due (meaningless for the other states)."""
    attempts: int
    last_error: str
    """The last transient error, or the quarantine reason."""


@dataclass(frozen=True)
class InProgress:
    key: Key
    owner: str
    host: str
    pid: int
    started_at: float
    expires_at: float
    reconcile_id: str


@dataclass(frozen=True)
class FailingKey:
    """A pending key that failed and waits for its next attempt."""

    key: Key
    attempts: int
    last_error: str
    next_attempt_at: float


@dataclass(frozen=True)
class QuarantinedKey:
    """A key that failed terminally; it stays put until its policy changes or a `retry`."""

    key: Key
    reason: str
    attempts: int
    policy_fingerprint: str | None
    quarantined_at: float


@dataclass(frozen=True)
class CachedLayer:
    """A converted layer remembered by (source layer digest, format, options key)."""

    descriptor: Descriptor
    diff_id: str
    """The digest of the converted layer's uncompressed stream, for the image config."""
    repository: str = ""
    """Where the converted blob was pushed, to mount it from into another repository."""


@dataclass(frozen=True)
class ScanError:
    """A part of the source a scan had to skip."""

    kind: str
    """`project` (its repository list), `repository` (its image list) or `image`."""
    where: str
    """The project, the repository, or the image as `repository@digest` or `repository:tag`."""
    reason: str


@dataclass(frozen=True)
class ScanMark:
    kind: str
    last_started_at: float | None
    last_success_started_at: float | None
    last_success_finished_at: float | None
    missing: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """Missing conversions per (policy, format) found by the last successful scan."""
    skipped: tuple[ScanError, ...] = ()
    """The parts the last successful scan skipped, the first `MAX_SKIPPED_KEPT` of them."""
    skipped_total: int = 0
    """How many parts it skipped in all."""


MAX_SKIPPED_KEPT = 100


class Missing(enum.Enum):
    """Marks a digest the classification cache has never seen (None means "not accelerated")."""

    MISSING = "missing"


MISSING: Final = Missing.MISSING


class KeyQueue(Protocol):
    """The persistent work queue of keys. Every method is safe from any thread."""

    def add(
        self, key: Key, due_at: float | None = None, policy_fingerprint: str | None = None
    ) -> None:
        """Make `key` pending at `due_at` (default now), keeping an earlier due time it has.

        A leased key is marked dirty instead; a backing-off key keeps its backoff; a quarantined
        key leaves quarantine only if `policy_fingerprint` differs from the one it failed with.
        """

    def lease(self, owner: str, limit: int) -> list[Lease]:
        """Take up to `limit` due keys for `owner`, earliest due first."""

    def renew(self, owner: str) -> int:
        """Extend every lease `owner` holds in this process; the number renewed."""

    def done(self, lease: Lease) -> bool:
        """The key is reconciled. False when the lease had been lost (nothing changed)."""

    def retry_later(self, lease: Lease, error: str) -> bool:
        """A transient failure: count it and make the key pending after its backoff."""

    def requeue_after(self, lease: Lease, seconds: float) -> bool:
        """An expected wait: pending again in `seconds`, failure count reset."""

    def quarantine(self, lease: Lease, reason: str) -> bool:
        """A terminal failure: park the key with its reason until its policy changes."""

    def release(self, lease: Lease) -> bool:
        """Give a key back unworked (shutting down): pending now, failure count unchanged."""

    def forget(self, key: Key) -> None:
        """Drop a key that needs no more work (a leased key just stops being dirty)."""

    def release_expired(self) -> int:
        """Make keys pending whose lease expired or whose owner process on this host died."""

    def recover(self, owner: str) -> int:
        """Make keys pending that `owner` held on this host before a restart."""

    def retry(self, key: Key) -> bool:
        """Move a quarantined or backing-off key to pending now, failure count reset."""

    def retry_all(self) -> int:
        """`retry` every quarantined or backing-off key; the number moved."""

    def key_state(self, key: Key) -> KeyState | None:
        """The queue row of `key`; None when the key is not queued (done, forgotten, never)."""

    def next_due(self) -> float | None:
        """When the earliest pending key is due, None when nothing is pending."""

    def counts(self) -> QueueCounts: ...

    def in_progress(self) -> list[InProgress]: ...

    def failing(self) -> list[FailingKey]: ...

    def quarantined(self) -> list[QuarantinedKey]: ...


class LayerCache(Protocol):
    """(source layer digest, format, options key) to the converted layer, shared by all workers."""

    def get(self, source_digest: str, format: str, options_key: str) -> CachedLayer | None: ...

    def put(self, source_digest: str, format: str, options_key: str, layer: CachedLayer) -> None:
        """Remember `layer`, replacing what was remembered under the same three values."""

    def forget(self, source_digest: str, format: str, options_key: str) -> None:
        """Drop what is remembered under the three values (its blob is gone)."""


class ClassificationCache(Protocol):
    """Manifest digest to the accelerated format it is: a digest's content never changes."""

    def get(self, digest: str) -> str | Missing | None:
        """The format a manifest was classified as, None for "not accelerated", or MISSING."""

    def put(self, digest: str, format: str | None) -> None: ...


class ScanMarks(Protocol):
    """When each kind of scan last started and last succeeded, and what that success found."""

    def scan_started(self, kind: str, at: float) -> None: ...

    def scan_finished(
        self,
        kind: str,
        started_at: float,
        finished_at: float,
        missing_by_policy_format: Mapping[tuple[str, str], int],
        skipped: Sequence[ScanError] = (),
    ) -> None: ...

    def last_scan(self, kind: str) -> ScanMark | None: ...

    def scans(self) -> list[ScanMark]:
        """Every kind's mark, by kind."""


class Retention(Protocol):
    """Trims the caches, so a steady stream of new images does not grow the state for ever."""

    def trim_layer_cache(self, unused_before: float) -> int:
        """Drop converted layers not used since `unused_before`; the number dropped."""

    def mark_seen(self, digests: Iterable[str], at: float) -> None:
        """Record that a scan saw each of `digests` (classified referrers) at `at`."""

    def trim_classifications(self, unseen_before: float) -> int:
        """Drop classifications of digests neither seen nor classified since `unseen_before`."""


@dataclass(frozen=True)
class LeaderLease:
    name: str
    holder: str
    expires_at: float


class LeaderLeases(Protocol):
    """Named leases, each held by one holder at a time across processes and hosts: the scan
    leader. A holder keeps its lease by taking it again before it expires; when the holder
    dies, another takes it over once it has expired."""

    def hold(self, name: str, holder: str, seconds: float) -> bool:
        """Take `name` for `holder` until `seconds` from now, or extend it if `holder` has it.

        False, changing nothing, while another holder's lease runs.
        """

    def give_up(self, name: str, holder: str) -> None:
        """End `holder`'s lease on `name` now (shutting down), so another need not wait."""

    def leaders(self) -> list[LeaderLease]:
        """Every lease, expired or not, by name."""


class StateDatabase(Protocol):
    """The connection (or pool) the parts of one `StateStore` share."""

    @property
    def schema_version(self) -> int:
        """The schema version this acceld writes (the database is at it once open)."""

    @property
    def migrated_from(self) -> int | None:
        """The version the database was at when opened (0: empty); None when not migrated."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class StateStore:
    """The queue, the caches, the scan marks and the leader leases of one state database.

    Hand each user the part it needs (`store.layers` to the conversion, `store.queue` to the
    work queue); `close` closes the database under all of them.
    """

    queue: KeyQueue
    layers: LayerCache
    classifications: ClassificationCache
    scans: ScanMarks
    leaders: LeaderLeases
    database: StateDatabase
    retention: Retention

    def close(self) -> None:
        self.database.close()
