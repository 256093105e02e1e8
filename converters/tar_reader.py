"""Read tar entries one by one from a decompressed layer stream, applying PAX and GNU records."""

from __future__ import annotations

from collections.abc import Iterator

from converters import tar_header as th
from converters.errors import LayerRejected
from converters.layer_source import LayerSource
from converters.limits import LayerLimits

_PIECE = 1 << 20
_ENTRY_TYPES = th.REGULAR_TYPES + th.HEADER_ONLY_TYPES


class TarReader:
    """Walks a tar stream: `next_header()` then, for regular files, `payload()`.

    Payload left unread is skipped by the next `next_header()`. The stream must end with the
    end-of-archive marker; a stream that just stops is truncated.

    Every header block and extended record is counted against the limits' metadata budgets
    (per entry and per layer) before it is read into memory, so a converter that keeps each
    entry's metadata stays within them.
    """

    def __init__(self, source: LayerSource, limits: LayerLimits) -> None:
        self._source = source
        self._limits = limits
        self._buffer = b""
        self._position = 0
        self._remaining = 0
        self._padding = 0
        self.entries = 0
        self.metadata = 0
        """Header bytes of all entries so far: header blocks plus extended records."""
        self._entry_metadata = 0
        self.header_offset = 0
        self.current: th.TarHeader | None = None

    @property
    def offset(self) -> int:
        """Offset in the decompressed tar of the next byte this reader will consume."""
        return self._source.offset - (len(self._buffer) - self._position)

    def _read(self, size: int) -> bytes:
        available = len(self._buffer) - self._position
        if available < size:
            missing = size - available
            pieces = [self._buffer[self._position :]]
            while missing > 0:
                data = self._source.read(max(missing, _PIECE))
                if not data:
                    break
                pieces.append(data)
                missing -= len(data)
            self._buffer = b"".join(pieces)
            self._position = 0
        end = self._position + size
        data = self._buffer[self._position : end]
        self._position = min(end, len(self._buffer))
        return data

    def _read_exact(self, size: int, what: str) -> bytes:
        start = self.offset
        data = self._read(size)
        if len(data) != size:
            raise LayerRejected(
                f"truncated tar stream: {what} at offset {start} needs {size} bytes, "
                f"only {len(data)} remain"
            )
        return data

    def _where(self, name: bytes | None = None) -> str:
        entry = f" (entry {name.decode('utf-8', 'replace')!r})" if name else ""
        return f"tar header at offset {self.header_offset}{entry}"

    def next_header(self) -> th.TarHeader | None:
        """The next entry's header, or None at the end-of-archive marker."""
        self._skip_rest()
        pax: list[tuple[bytes, bytes]] = []
        long_name: bytes | None = None
        long_link: bytes | None = None
        self._entry_metadata = 0
        while True:
            self.header_offset = self.offset
            block = self._read(th.BLOCK)
            if not block:
                raise LayerRejected(
                    f"truncated tar stream: ended at offset {self.header_offset} without the "
                    "end-of-archive marker"
                )
            if len(block) != th.BLOCK:
                raise LayerRejected(
                    f"truncated tar stream: partial header block at offset {self.header_offset}"
                )
            if th.is_zero_block(block):
                self.current = None
                return None
            self._count_metadata(th.BLOCK)
            try:
                raw = th.parse_block(block)
            except th.TarFormatError as error:
                if self.header_offset == 0:
                    raise LayerRejected(f"not a tar stream: {error}") from None
                raise LayerRejected(f"corrupt {self._where()}: {error}") from None
            if raw.typeflag in (th.PAX, th.GNU_LONGNAME, th.GNU_LONGLINK):
                data = self._record_payload(raw)
                if raw.typeflag == th.PAX:
                    pax.extend(self._pax_records(data))
                elif raw.typeflag == th.GNU_LONGNAME:
                    long_name = data.split(b"\x00", 1)[0]
                else:
                    long_link = data.split(b"\x00", 1)[0]
                continue
            return self._entry(raw, pax, long_name, long_link)

    def _record_payload(self, raw: th.RawHeader) -> bytes:
        limit = self._limits.max_pax_header_size
        if raw.size > limit or raw.size < 0:
            raise LayerRejected(
                f"{self._where()}: extended header of {raw.size} bytes exceeds the limit of "
                f"{limit} bytes"
            )
        self._count_metadata(raw.size)
        data = self._read_exact(raw.size, "extended header")
        self._read_exact(len(th.padding(raw.size)), "extended header padding")
        return data

    def _count_metadata(self, size: int) -> None:
        """Count `size` more header bytes of the current entry, before they are read."""
        self._entry_metadata += size
        self.metadata += size
        entry_limit = self._limits.max_entry_metadata
        if self._entry_metadata > entry_limit:
            raise LayerRejected(
                f"{self._where()}: the entry's headers and extended records take more than "
                f"{entry_limit} bytes (limit max_entry_metadata)"
            )
        layer_limit = self._limits.max_layer_metadata
        if self.metadata > layer_limit:
            raise LayerRejected(
                f"{self._where()}: the headers and extended records of the layer's "
                f"{self.entries + 1} entries so far take more than {layer_limit} bytes "
                "(limit max_layer_metadata)"
            )

    def _pax_records(self, data: bytes) -> list[tuple[bytes, bytes]]:
        try:
            return th.parse_pax_records(data)
        except th.TarFormatError as error:
            raise LayerRejected(f"corrupt PAX header in {self._where()}: {error}") from None

    def _entry(
        self,
        raw: th.RawHeader,
        pax: list[tuple[bytes, bytes]],
        long_name: bytes | None,
        long_link: bytes | None,
    ) -> th.TarHeader:
        fields: dict[bytes, bytes] = {}
        extra: dict[bytes, bytes] = {}
        for key, value in pax:
            if key in th.FIELD_KEYS:
                fields[key] = value
            else:
                extra[key] = value
        name = fields.get(b"path", long_name if long_name is not None else raw.name)
        if raw.typeflag == th.PAX_GLOBAL:
            raise LayerRejected(f"{self._where(name)}: global PAX headers are not supported")
        if raw.typeflag == b"S" or (extra and any(key.startswith(b"GNU.sparse.") for key in extra)):
            raise LayerRejected(f"{self._where(name)}: sparse files are not supported")
        if raw.typeflag not in _ENTRY_TYPES:
            raise LayerRejected(
                f"{self._where(name)}: unsupported entry type {raw.typeflag.decode('latin-1')!r}"
            )
        self.entries += 1
        if self.entries > self._limits.max_entries:
            raise LayerRejected(
                f"{self._where(name)}: more than {self._limits.max_entries} entries"
            )
        mtime = raw.mtime
        pax_mtime = extra.get(b"mtime")
        if pax_mtime is not None:
            mtime = self._pax_mtime(pax_mtime, name)
            if b"." not in pax_mtime:
                del extra[b"mtime"]
        size = 0 if raw.typeflag in th.HEADER_ONLY_TYPES else raw.size
        uid, gid = raw.uid, raw.gid
        if fields:
            try:
                size = int(fields.get(b"size", b"%d" % size))
                uid = int(fields.get(b"uid", b"%d" % uid))
                gid = int(fields.get(b"gid", b"%d" % gid))
            except ValueError:
                raise LayerRejected(f"{self._where(name)}: non-numeric PAX size/uid/gid") from None
        if size < 0:
            raise LayerRejected(f"{self._where(name)}: negative size {size}")
        header = th.TarHeader(
            name=name,
            typeflag=raw.typeflag,
            mode=raw.mode,
            uid=uid,
            gid=gid,
            size=size if raw.typeflag in th.REGULAR_TYPES else 0,
            mtime=mtime,
            linkname=fields.get(b"linkpath", long_link if long_link is not None else raw.linkname),
            uname=fields.get(b"uname", raw.uname),
            gname=fields.get(b"gname", raw.gname),
            devmajor=raw.devmajor,
            devminor=raw.devminor,
            pax=tuple(extra.items()),
        )
        self._remaining = size
        self._padding = len(th.padding(size))
        self.current = header
        return header

    def _pax_mtime(self, value: bytes, name: bytes) -> int:
        """Whole seconds of a PAX mtime; a fractional value also stays as its record."""
        whole = value.split(b".", 1)[0]
        try:
            return int(whole) if whole not in (b"", b"-") else 0
        except ValueError:
            raise LayerRejected(f"{self._where(name)}: bad PAX mtime {value!r}") from None

    def payload(self) -> Iterator[bytes]:
        """The current entry's payload in pieces of at most 1 MiB."""
        while self._remaining:
            start = self.offset
            available = len(self._buffer) - self._position
            if available:
                data = self._read(min(self._remaining, available))
            else:
                # Straight from the source: payload bytes need no trip through the buffer.
                data = self._source.read(min(self._remaining, _PIECE))
            if not data:
                name = self.current.name if self.current else b""
                raise LayerRejected(
                    f"truncated tar stream: payload of {self._where(name)} ends at offset "
                    f"{start} with {self._remaining} bytes missing"
                )
            self._remaining -= len(data)
            yield data

    def _skip_rest(self) -> None:
        for _ in self.payload():
            pass
        if self._padding:
            self._read_exact(self._padding, "payload padding")
            self._padding = 0
