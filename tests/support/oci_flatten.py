"""An independent flattening of an OCI image, and tree snapshots that compare as values.

The reference for a converted image's tree is the original image unpacked by Debian's `umoci`
(an implementation of the OCI layer rules that shares no code with acceld): `write_oci_layout`
puts the original's manifest, config and layers into an OCI image layout, `umoci_unpack`
flattens it, and `snapshot_tree` records what a container would see, from any directory: the
umoci rootfs, or a mounted EROFS tree.

What umoci 0.4.7 does that is not the converter's business (checked on this machine):
- It handles gzip and uncompressed layers only; `write_oci_layout` hands it a zstd layer
  decompressed, under the uncompressed media type and digest (the diff_id).
- Whiteouts and opaque markers are applied and never appear in the rootfs.
- A directory's mtime is the one from its tar entry, restored after its children are written,
  also when a later layer adds children without an entry for the directory itself.
- A parent directory no layer has an entry for (`a/b/file` alone) is created 0755 root:root
  with the unpack time as mtime; the rootfs root itself gets umoci's own mode and mtime even
  when a layer has a `./` entry. `snapshot_tree` leaves the root out unless asked; compare
  such implicit directories with `dir_mtimes=False`.
- As root it keeps owners, device nodes, setuid bits and `trusted.`/`security.` xattrs.
  `--rootless` (forced for non-root callers) writes device nodes as empty regular files,
  owns everything by the caller and records the tar owners in a `user.rootlesscontainers`
  xattr: compare rootless trees with `owners=False`, without `user.` xattrs and `without()`
  the device paths.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import zstandard

OCI_LAYOUT_VERSION = '{"imageLayoutVersion":"1.0.0"}'
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ZSTD_LAYER = "application/vnd.oci.image.layer.v1.tar+zstd"
PLAIN_LAYER = "application/vnd.oci.image.layer.v1.tar"
GZIP_LAYERS = (
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
)

KINDS = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}


class UmociUnavailable(RuntimeError):
    """umoci is not installed."""


@dataclass(frozen=True)
class TreeEntry:
    """One path as a container sees it. `size` and `sha256` only for regular files."""

    path: str
    kind: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    size: int
    sha256: str | None
    symlink: str | None
    rdev: int | None
    xattrs: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class TreeSnapshot:
    entries: tuple[TreeEntry, ...]
    hardlinks: frozenset[frozenset[str]] = field(default_factory=frozenset)

    @property
    def by_path(self) -> dict[str, TreeEntry]:
        return {e.path: e for e in self.entries}


def snapshot_tree(
    root: Path,
    *,
    include_root: bool = False,
    owners: bool = True,
    mtimes: bool = True,
    dir_mtimes: bool = True,
    devices: bool = True,
    xattr_prefixes: Sequence[str] = ("user.", "trusted.", "security.", "system.posix_acl_"),
) -> TreeSnapshot:
    """Walk `root` with lstat and record every path (relative, `/`-rooted) and attribute.

    Each switch leaves one attribute out of the comparison, for trees that cannot hold it
    (a rootless unpack has no owners or devices); hardlink groups are paths of non-directories
    sharing an inode.
    """
    entries: list[TreeEntry] = []
    inodes: dict[tuple[int, int], set[str]] = {}
    for current, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        base = Path(current)
        names = ([base] if base == root else []) + [base / n for n in sorted(dirs + files)]
        for path in names:
            rel = "/" + path.relative_to(root).as_posix() if path != root else "/"
            if rel == "/" and not include_root:
                continue
            st = path.lstat()
            kind = KINDS.get(stat.S_IFMT(st.st_mode), "unknown")
            if not devices and kind in ("char", "block"):
                continue
            entries.append(_entry(path, rel, st, kind, owners, mtimes, dir_mtimes, xattr_prefixes))
            if kind != "dir":
                inodes.setdefault((st.st_dev, st.st_ino), set()).add(rel)
    groups = frozenset(frozenset(g) for g in inodes.values() if len(g) > 1)
    return TreeSnapshot(tuple(sorted(entries, key=lambda e: e.path)), groups)


def _entry(
    path: Path,
    rel: str,
    st: os.stat_result,
    kind: str,
    owners: bool,
    mtimes: bool,
    dir_mtimes: bool,
    xattr_prefixes: Sequence[str],
) -> TreeEntry:
    digest = None
    if kind == "file":
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        digest = h.hexdigest()
    keep_mtime = mtimes and (dir_mtimes or kind != "dir")
    names = sorted(os.listxattr(path, follow_symlinks=False))
    xattrs = tuple(
        (name, os.getxattr(path, name, follow_symlinks=False))
        for name in names
        if name.startswith(tuple(xattr_prefixes))
    )
    return TreeEntry(
        path=rel,
        kind=kind,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid if owners else 0,
        gid=st.st_gid if owners else 0,
        mtime_ns=st.st_mtime_ns if keep_mtime else 0,
        size=st.st_size if kind in ("file", "symlink") else 0,
        sha256=digest,
        symlink=os.readlink(path) if kind == "symlink" else None,
        rdev=st.st_rdev if kind in ("char", "block") else None,
        xattrs=xattrs,
    )


def tree_differences(expected: TreeSnapshot, actual: TreeSnapshot, limit: int = 50) -> list[str]:
    """Human-readable differences, path by path, empty when the trees are equal."""
    out: list[str] = []
    want, got = expected.by_path, actual.by_path
    for path in sorted(want.keys() | got.keys()):
        a, b = want.get(path), got.get(path)
        if a is None:
            out.append(f"{path}: unexpected {b.kind if b else '?'}")
        elif b is None:
            out.append(f"{path}: missing {a.kind}")
        elif a != b:
            fields = [
                f"{name} {getattr(a, name)!r} != {getattr(b, name)!r}"
                for name in TreeEntry.__dataclass_fields__
                if getattr(a, name) != getattr(b, name)
            ]
            out.append(f"{path}: " + "; ".join(fields))
    if expected.hardlinks != actual.hardlinks:
        out.append(
            f"hardlink groups {sorted(map(sorted, expected.hardlinks))} != "
            f"{sorted(map(sorted, actual.hardlinks))}"
        )
    return out[:limit]


def without(snapshot: TreeSnapshot, *paths: str) -> TreeSnapshot:
    """The snapshot without the given paths and everything below them."""

    def kept(path: str) -> bool:
        return not any(path == p or path.startswith(p.rstrip("/") + "/") for p in paths)

    return replace(
        snapshot,
        entries=tuple(e for e in snapshot.entries if kept(e.path)),
        hardlinks=frozenset(
            frozenset(g)
            for g in (frozenset(filter(kept, grp)) for grp in snapshot.hardlinks)
            if len(g) > 1
        ),
    )


# --- OCI layout and umoci ----------------------------------------------------------------


def _write_blob(blobs_dir: Path, content: bytes | Path) -> tuple[str, int]:
    if isinstance(content, Path):
        h = hashlib.sha256()
        with content.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        digest, size = h.hexdigest(), content.stat().st_size
        target = blobs_dir / digest
        if not target.exists():
            shutil.copyfile(content, target)
    else:
        digest, size = hashlib.sha256(content).hexdigest(), len(content)
        target = blobs_dir / digest
        if not target.exists():
            target.write_bytes(content)
    return f"sha256:{digest}", size


def write_oci_layout(
    layout: Path,
    manifest: bytes,
    blobs: Mapping[str, bytes | Path],
    tag: str = "original",
) -> Path:
    """Write one image (manifest bytes, digest -> config/layer content) as an OCI layout.

    zstd layers are stored decompressed, as plain tar under their diff_id, because umoci
    0.4.7 reads gzip and plain layers only; the manifest is rewritten to match.
    """
    blobs_dir = layout / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(OCI_LAYOUT_VERSION, encoding="ascii")
    parsed = json.loads(manifest)
    config_digest, _ = _write_blob(blobs_dir, blobs[parsed["config"]["digest"]])
    layers = []
    for layer in parsed["layers"]:
        content = blobs[layer["digest"]]
        media_type = layer["mediaType"]
        if media_type == ZSTD_LAYER:
            raw = content.read_bytes() if isinstance(content, Path) else content
            content = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
            media_type = PLAIN_LAYER
        elif media_type == DOCKER_MANIFEST or "nydus" in media_type:
            raise ValueError(f"layer {layer['digest']} has media type {media_type}: not a tar")
        digest, size = _write_blob(blobs_dir, content)
        layers.append({"mediaType": media_type, "digest": digest, "size": size})
    rewritten = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(_read(blobs[parsed["config"]["digest"]])),
        },
        "layers": layers,
    }
    manifest_digest, manifest_size = _write_blob(blobs_dir, json.dumps(rewritten).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": manifest_digest,
                "size": manifest_size,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index), encoding="utf-8")
    return layout


def _read(content: bytes | Path) -> bytes:
    return content.read_bytes() if isinstance(content, Path) else content


def umoci_unpack(layout: Path, bundle: Path, tag: str = "original", rootless: bool = False) -> Path:
    """Flatten the tagged image of an OCI layout with umoci; returns the rootfs directory."""
    if shutil.which("umoci") is None:
        raise UmociUnavailable("umoci is not installed (Debian package umoci)")
    args = ["umoci", "unpack", "--image", f"{layout}:{tag}"]
    if rootless or os.geteuid() != 0:
        args.append("--rootless")
    done = subprocess.run(
        [*args, str(bundle)], capture_output=True, text=True, check=False, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"umoci unpack {layout}:{tag}: {done.stderr.strip()}")
    return bundle / "rootfs"
