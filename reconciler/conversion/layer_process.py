"""Convert one layer file in a child process.

The daemon answers webhooks in the same process that runs conversions; the converter's Python
work (tar parsing, TOC building) holds the GIL, and two conversions in threads push webhook
answer times past Harbor's patience. A child process per layer keeps the server responsive,
bounds the converter's memory to its own process and confines a crash to one layer.

The child parses hostile tar, gzip and zstd, so it gets as little as it can work with: an
environment of PATH, LANG, LC_* and the PYTHON* variables it needs to import acceld (no
credential, no webhook secret, no `CREDENTIALS_DIRECTORY`), and no path to resolve: the parent
opens the source, the destination (created, never followed through a symlink) and the work
directory, and hands the child their descriptors, so a work area renamed or swapped under it
changes nothing. The child hashes the source it reads and compares it with the digest the parent
downloaded.

Protocol: the parent writes the options and the source digest as JSON on stdin; the child prints
one JSON object: `{"layer": {...}}` on success, `{"rejected": "<reason>"}` for a bad layer (exit
status 3), `{"mismatch": "<reason>"}` when the source is not the downloaded blob, or
`{"no_room": true}` when the parent refused room in the work directory. The child writes nothing
to the work directory (spill, output) that the parent has not granted: over a socket it asks for
`<needed> <preferred>` bytes and the parent answers the count granted from the conversion's
reservation in the disk budget, or 0 (the parent keeps why).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from converters import estargz, nydus
from converters.errors import LayerRejected
from harbor_api.errors import AcceldError, DigestMismatch
from harbor_api.oci import OCI_LAYER_GZIP
from policies.model import LAYER_OPTIONS, LayerOptions
from reconciler.conversion.disk_budget import (
    BudgetTooSmall,
    ClaimingWriter,
    Reservation,
    WorkDirBusy,
    unbounded,
)

log = logging.getLogger(__name__)

REJECTED_EXIT = 3
NO_ROOM_EXIT = 4
MISMATCH_EXIT = 5

# The child asks for room in steps of this much, fewer round trips for large layers.
ROOM_STEP = 16 << 20

# What the child needs to start Python and import acceld; nothing else of the parent's.
_CHILD_VARIABLES = frozenset({"PATH", "LANG", "PYTHONPATH", "PYTHONHOME", "PYTHONUNBUFFERED"})

_T = typing.TypeVar("_T")


class ConverterCrashed(AcceldError):
    """The converter process died or answered nonsense; transient (retried with backoff)."""


@dataclass(frozen=True)
class ConvertedBlob:
    """A converted layer blob as the image needs it, whatever the format."""

    digest: str
    size: int
    diff_id: str
    """The digest of the layer's uncompressed stream, for the image config."""
    media_type: str
    annotations: dict[str, str]


def _options_from(data: dict[str, Any]) -> LayerOptions:
    return _dataclass_from(LAYER_OPTIONS[data["format"]], data["options"])


def _convert(
    source: BinaryIO, dest: BinaryIO, options: LayerOptions, claim: Callable[[int], None]
) -> ConvertedBlob:
    """Convert in the current directory (the work directory), each write claimed first."""
    out = typing.cast(BinaryIO, ClaimingWriter(dest, claim))
    if isinstance(options, nydus.NydusOptions):
        blob = nydus.convert_layer(source, out, options, Path("."))
        return ConvertedBlob(
            blob.digest, blob.size, blob.digest, nydus.MEDIA_TYPE_BLOB, blob.annotations()
        )
    layer = estargz.convert_layer(source, out, options, Path("."), claim)
    return ConvertedBlob(
        layer.digest, layer.size, layer.diff_id, OCI_LAYER_GZIP, layer.annotations()
    )


def _dataclass_from(cls: type[_T], data: dict[str, Any]) -> _T:
    """`cls` rebuilt from `dataclasses.asdict` output: nested dataclasses and tuples again."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for option in dataclasses.fields(cls):  # type: ignore[arg-type]
        value, hint = data[option.name], hints[option.name]
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            value = _dataclass_from(hint, value)
        elif isinstance(value, list):
            value = tuple(value)
        values[option.name] = value
    return cls(**values)


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The converter child's environment: what starting Python and importing acceld need."""
    return {
        name: value
        for name, value in environ.items()
        if name in _CHILD_VARIABLES or name.startswith("LC_")
    }


def convert_layer_file(
    source: Path,
    dest: Path,
    format: str,
    options: LayerOptions,
    work_dir: Path,
    *,
    timeout: float,
    source_digest: str | None = None,
    room: Reservation | None = None,
) -> ConvertedBlob:
    """Convert `source` into `dest` (created here) in a child process; `LayerRejected` for a
    bad layer. The child checks that `source` hashes to `source_digest` when it is given, and
    claims from `room` every byte it writes (`BudgetTooSmall`, `WorkDirBusy` when refused)."""
    request = json.dumps(
        {"format": format, "options": dataclasses.asdict(options), "source_digest": source_digest}
    )
    with contextlib.ExitStack() as stack:
        fds = [
            _open(stack, work_dir, os.O_RDONLY | os.O_DIRECTORY),
            _open(stack, source, os.O_RDONLY),
            _open(stack, dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL),
        ]
        ours, theirs = socket.socketpair()
        stack.callback(ours.close)
        with theirs:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "reconciler.conversion.layer_process",
                    *(str(fd) for fd in (*fds, theirs.fileno(), os.getpid())),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                pass_fds=(*fds, theirs.fileno()),
                env=child_environment(os.environ),
            )
        granter = _RoomGranter(ours, room if room is not None else unbounded())
        granter.start()
        try:
            stdout, stderr = process.communicate(request, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            process.kill()
            process.communicate()
            raise ConverterCrashed(f"converting {source.name} took over {timeout:.0f} s") from exc
        finally:
            granter.join()
    if granter.refusal is not None:
        raise granter.refusal
    return _answer(stdout, stderr, process.returncode)


def _open(stack: contextlib.ExitStack, path: Path, flags: int) -> int:
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    stack.callback(os.close, fd)
    return fd


def _answer(stdout: str, stderr: str, status: int) -> ConvertedBlob:
    try:
        result = json.loads(stdout)
    except ValueError:
        tail = stderr.strip().splitlines()[-1:] or ["no output"]
        raise ConverterCrashed(
            f"converter process exited with status {status}: {tail[0]}"
        ) from None
    if result.get("nice_refused"):
        _warn_once_about_niceness(str(result["nice_refused"]))
    if "rejected" in result:
        raise LayerRejected(str(result["rejected"]))
    if "mismatch" in result:
        raise DigestMismatch(str(result["mismatch"]))
    if "layer" not in result:
        raise ConverterCrashed(f"converter process exited with status {status}: {stdout[:200]}")
    return ConvertedBlob(**result["layer"])


_niceness_warned = threading.Event()


def _warn_once_about_niceness(error: str) -> None:
    if not _niceness_warned.is_set():
        _niceness_warned.set()
        log.warning(
            "the converter child cannot lower its priority; converting at the daemon's",
            extra={"error": error},
        )


class _RoomGranter(threading.Thread):
    """Answers the child's requests for room from the conversion's reservation."""

    def __init__(self, sock: socket.socket, room: Reservation) -> None:
        super().__init__(name="converter-room", daemon=True)
        self._sock = sock
        self._room = room
        self.refusal: AcceldError | None = None

    def run(self) -> None:
        with self._sock.makefile("rb") as requests:
            for line in requests:
                try:
                    needed, preferred = (int(part) for part in line.split())
                except ValueError:
                    needed = preferred = -1
                if needed < 0 or preferred < needed:
                    self.refusal = ConverterCrashed(f"converter asked for room with {line!r}")
                    return
                try:
                    granted = self._room.claim(needed, preferred)
                except (BudgetTooSmall, WorkDirBusy) as exc:
                    self.refusal = exc
                    granted = 0
                self._sock.sendall(b"%d\n" % granted)
                if not granted and needed:
                    return


# Conversions are batch work; the webhook server and the scheduler in the parent are not.
CHILD_NICENESS = 10


PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Be killed when the parent exits (a daemon stopped past its grace period, a crash):
    this conversion's output is a temporary file only the parent would read, so an orphan
    would go on burning CPU for nothing, beside the restarted daemon converting it again."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent exited before the request was made
        sys.exit(1)


class _NoRoom(Exception):
    """The parent granted no more room in the work directory."""


class _ParentRoom:
    """Room in the work directory, asked of the parent as writes need it."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._answers = sock.makefile("rb")
        self._lock = threading.Lock()
        self._granted = 0
        self._used = 0

    def claim(self, nbytes: int) -> None:
        with self._lock:
            missing = self._used + nbytes - self._granted
            if missing > 0:
                self._sock.sendall(f"{missing} {max(missing, ROOM_STEP)}\n".encode())
                granted = int(self._answers.readline() or 0)
                if granted < missing:
                    raise _NoRoom
                self._granted += granted
            self._used += nbytes


class _HashingReader(io.RawIOBase):
    """The source, hashed as the converter reads it."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._file = os.fdopen(fd, "rb", buffering=0)
        self._hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._file.readinto(buffer) or 0
        self._hash.update(memoryview(buffer)[:count])
        return count

    def digest_of_all(self) -> str:
        """The digest of the whole source, reading what the converter left."""
        while self.read(1 << 20):
            pass
        return "sha256:" + self._hash.hexdigest()


def _lower_priority() -> str:
    """Lower this process's priority; the error when a sandbox refuses it."""
    try:
        os.nice(CHILD_NICENESS)
    except PermissionError as exc:
        return str(exc)
    return ""


def main(argv: list[str]) -> int:
    work_fd, source_fd, dest_fd, room_fd = (int(arg) for arg in argv[:4])
    _die_with_parent(int(argv[4]))
    nice_refused = _lower_priority()
    request = json.loads(sys.stdin.read())
    options = _options_from(request)
    os.fchdir(work_fd)
    source = _HashingReader(source_fd)
    answer: dict[str, object] = {"nice_refused": nice_refused} if nice_refused else {}
    status = 0
    src = typing.cast(BinaryIO, io.BufferedReader(source, 1 << 20))
    room = _ParentRoom(socket.socket(fileno=room_fd))
    try:
        with os.fdopen(dest_fd, "wb") as out:
            answer["layer"] = dataclasses.asdict(_convert(src, out, options, room.claim))
    except LayerRejected as exc:
        answer["rejected"], status = exc.reason, REJECTED_EXIT
    except _NoRoom:
        print(json.dumps({"no_room": True}))
        return NO_ROOM_EXIT
    expected = request.get("source_digest")
    if expected:
        actual = source.digest_of_all()
        if actual != expected:
            answer = {
                "mismatch": f"the source the converter read hashes to {actual}, not {expected}: "
                "the work directory was changed under it"
            }
            status = MISMATCH_EXIT
    print(json.dumps(answer))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
