"""Tar entries of one layer into a tree of `Inode`s, checking what RAFS can represent.

A later entry with the same name replaces the earlier one (a directory over a directory keeps
the children). Missing parent directories are made with mode 0755, owner 0, mtime 0.
Whiteout files (`.wh.*`) stay ordinary files here; the merge gives them their meaning.
"""

from __future__ import annotations

from converters import tar_header as th
from converters.entry_names import display
from converters.errors import LayerRejected
from converters.nydus import ondisk
from converters.nydus.bootstrap import xattr_index
from converters.nydus.tree import Inode, LayerChunks, implicit_directory

_TYPES = {
    th.REG: ondisk.S_IFREG,
    th.AREG: ondisk.S_IFREG,
    th.CONTIGUOUS: ondisk.S_IFREG,
    th.SYMLINK: ondisk.S_IFLNK,
    th.CHAR: ondisk.S_IFCHR,
    th.BLOCKDEV: ondisk.S_IFBLK,
    th.DIR: ondisk.S_IFDIR,
    th.FIFO: ondisk.S_IFIFO,
}
_MAX_ID = (1 << 32) - 1
# Extended inodes store mtime as a u64 the kernel reads as signed.
_MIN_TIME = -(1 << 63)
_MAX_TIME = (1 << 63) - 1
_MAX_XATTR_VALUE = 0xFFFF
_MAX_XATTR_BODY = 4 * 0xFFFF


class TreeBuilder:
    """Collects a layer's entries; `root` is the finished tree."""

    def __init__(self) -> None:
        self.root = implicit_directory()

    def add(self, key: bytes, inode: Inode, where: str) -> None:
        """Put `inode` at the cleaned path `key` (b"" is the root)."""
        if not key:
            if not inode.is_dir:
                raise LayerRejected(f"{where}: the root is not a directory")
            assert self.root.children is not None
            inode.children = self.root.children
            self.root = inode
            return
        parent, name = self._parent(key, where)
        assert parent.children is not None
        existing = parent.children.get(name)
        if inode.is_dir:
            kept = existing.children if existing is not None and existing.is_dir else None
            inode.children = kept if kept is not None else {}
        parent.children[name] = inode

    def link(self, key: bytes, target_key: bytes, where: str) -> None:
        """Make `key` a hardlink to the inode at `target_key`."""
        target = self.find(target_key)
        if target is None:
            raise LayerRejected(
                f"{where}: hardlink {display(key)!r} points to {display(target_key)!r}, "
                "which is not in the layer"
            )
        if target.is_dir:
            raise LayerRejected(
                f"{where}: hardlink {display(key)!r} points to directory {display(target_key)!r}"
            )
        if not key:
            raise LayerRejected(f"{where}: the root cannot be a hardlink")
        parent, name = self._parent(key, where)
        assert parent.children is not None
        parent.children[name] = target

    def find(self, key: bytes) -> Inode | None:
        node: Inode | None = self.root
        for part in key.split(b"/") if key else []:
            if node is None or node.children is None:
                return None
            node = node.children.get(part)
        return node

    def _parent(self, key: bytes, where: str) -> tuple[Inode, bytes]:
        parts = key.split(b"/")
        for part in parts:
            if len(part) > ondisk.MAX_NAME_LEN:
                raise LayerRejected(
                    f"{where}: name {display(part)!r} in {display(key)!r} is longer than "
                    f"{ondisk.MAX_NAME_LEN} bytes"
                )
        node = self.root
        for depth, part in enumerate(parts[:-1]):
            assert node.children is not None
            child = node.children.get(part)
            if child is None:
                child = implicit_directory()
                node.children[part] = child
            elif not child.is_dir:
                path = b"/".join(parts[: depth + 1])
                raise LayerRejected(
                    f"{where}: {display(key)!r} is inside {display(path)!r}, which is not a "
                    "directory"
                )
            node = child
        return node, parts[-1]


def inode_from_header(
    header: th.TarHeader, key: bytes, where: str, chunks: LayerChunks, first_seq: int
) -> Inode:
    """The inode a tar entry (not a hardlink) describes; LayerRejected if RAFS cannot hold it."""
    name = display(key) or "/"
    for what, value in (("uid", header.uid), ("gid", header.gid)):
        if not 0 <= value <= _MAX_ID:
            raise LayerRejected(f"{where}: {name!r} has {what} {value}, outside 0..{_MAX_ID}")
    kind = _TYPES[header.typeflag]
    seconds, nanoseconds = _mtime(header, where)
    if not _MIN_TIME <= seconds <= _MAX_TIME:
        raise LayerRejected(
            f"{where}: {name!r} has mtime {seconds}, outside the signed 64-bit range RAFS holds"
        )
    # Linux gives every symlink mode 0777 whatever the tar says; so does any extraction.
    permissions = 0o777 if kind == ondisk.S_IFLNK else header.mode & 0o7777
    inode = Inode(
        mode=kind | permissions,
        uid=header.uid,
        gid=header.gid,
        mtime=seconds,
        mtime_nsec=nanoseconds,
        xattrs=_xattrs(header, name, where),
    )
    if kind == ondisk.S_IFREG:
        inode.size = header.size
        inode.chunks = chunks
        inode.first_seq = first_seq
    elif kind == ondisk.S_IFLNK:
        target = header.linkname
        if not target or len(target) > ondisk.MAX_SYMLINK_TARGET:
            raise LayerRejected(
                f"{where}: symlink {name!r} has a target of {len(target)} bytes; "
                f"1..{ondisk.MAX_SYMLINK_TARGET} are allowed"
            )
        inode.target = target
        inode.size = len(target)
    elif kind in (ondisk.S_IFCHR, ondisk.S_IFBLK):
        inode.rdev = _rdev(header.devmajor, header.devminor, name, where)
    return inode


def _rdev(major: int, minor: int, name: str, where: str) -> int:
    """Linux's new_encode_dev: what EROFS stores and the kernel decodes."""
    if not (0 <= major < 1 << 12 and 0 <= minor < 1 << 20):
        raise LayerRejected(f"{where}: device {name!r} has number {major}:{minor}, too large")
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


def _mtime(header: th.TarHeader, where: str) -> tuple[int, int]:
    for key, value in header.pax:
        if key == b"mtime":
            return _parse_pax_time(value, where)
    return header.mtime, 0


def _parse_pax_time(value: bytes, where: str) -> tuple[int, int]:
    text = value.decode("ascii", "replace")
    negative = text.startswith("-")
    whole, _, fraction = text.lstrip("-").partition(".")
    if not whole.isdigit() or (fraction and not fraction.isdigit()):
        raise LayerRejected(f"{where}: bad PAX mtime {text!r}")
    seconds = int(whole)
    nanoseconds = int((fraction + "000000000")[:9]) if fraction else 0
    if negative:
        seconds = -seconds
        if nanoseconds:
            seconds -= 1
            nanoseconds = 1_000_000_000 - nanoseconds
    return seconds, nanoseconds


def _xattrs(header: th.TarHeader, name: str, where: str) -> tuple[tuple[bytes, bytes], ...]:
    if not header.pax:
        return ()
    pairs = sorted(header.xattrs().items())
    body = ondisk.XATTR_IBODY_HEADER_SIZE
    for key, value in pairs:
        try:
            _, suffix = xattr_index(key)
        except ValueError:
            raise LayerRejected(
                f"{where}: {name!r} has xattr {display(key)!r}; RAFS holds only the user., "
                "trusted., security. and system.posix_acl_* namespaces"
            ) from None
        if len(suffix) > ondisk.MAX_NAME_LEN or len(value) > _MAX_XATTR_VALUE:
            raise LayerRejected(
                f"{where}: {name!r} has xattr {display(key)!r} with a name over "
                f"{ondisk.MAX_NAME_LEN} bytes or a value over {_MAX_XATTR_VALUE} bytes"
            )
        body += ondisk.round_up(4 + len(suffix) + len(value), 4)
    if body > _MAX_XATTR_BODY:
        raise LayerRejected(f"{where}: {name!r} has more xattr data than an inode can hold")
    return tuple(pairs)
