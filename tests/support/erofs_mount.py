"""The kernel oracle: mount a RAFS v6 bootstrap with the kernel's EROFS, and run fsck.erofs.

EROFS reads file data from one extra device per blob, addressed in 4 KiB blocks of the blob's
*uncompressed cache image*, the file nydusd's fscache mode fills: every chunk decompressed at
its uncompressed offset. `write_cache_image` builds that file from the blob's own blob.meta
(through `rafs_reader`, never through the converter); `mounted_rafs` attaches one loop device
per image, mounts read-only, and always unmounts and detaches, even when the test fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.rafs_reader import (
    BLOCK,
    BlobEntry,
    Bootstrap,
    chunk_data,
    open_blob,
    parse_blob,
    round_up,
)


def mount_unavailable() -> str | None:
    """Why this machine cannot mount EROFS through loop devices, or None when it can."""
    if os.geteuid() != 0:
        return "mounting EROFS needs root"
    if not Path("/dev/loop-control").exists():
        return "no loop devices (/dev/loop-control is missing)"
    try:
        filesystems = Path("/proc/filesystems").read_text(encoding="ascii")
    except OSError:
        return "cannot read /proc/filesystems"
    if not any(line.split()[-1:] == ["erofs"] for line in filesystems.splitlines()):
        return "the kernel has no EROFS driver (not in /proc/filesystems)"
    for tool in ("losetup", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def require_mount() -> None:
    """Skip the calling test, with the reason, where EROFS cannot be mounted."""
    reason = mount_unavailable()
    if reason is not None:
        pytest.skip(reason)


def require_fsck() -> None:
    if shutil.which("fsck.erofs") is None:
        pytest.skip("fsck.erofs is not installed (Debian erofs-utils)")


def write_cache_image(blob_path: Path, entry: BlobEntry, dest: Path) -> Path:
    """Write a blob's uncompressed cache image: chunk i decompressed at its uncompressed offset.

    `entry` is the blob's blob-table entry: its compressor, and its uncompressed_size as the
    image size (at least the last chunk's 4 KiB-aligned end).
    """
    with open_blob(blob_path) as data:
        blob = parse_blob(data)
        end = max((round_up(c.uncompressed_end, BLOCK) for c in blob.chunks), default=0)
        with dest.open("wb") as out:
            out.truncate(max(end, entry.uncompressed_size))
            for index, info in enumerate(blob.chunks):
                out.seek(info.uncompressed_offset)
                out.write(chunk_data(data, blob, index, entry.compressor))
    return dest


def write_cache_images(
    boot: Bootstrap, blob_paths: Mapping[str, Path], directory: Path
) -> list[Path]:
    """One cache image per blob of the bootstrap (blob id -> blob file), in blob-table order."""
    return [
        write_cache_image(blob_paths[entry.blob_id], entry, directory / f"{entry.blob_id}.cache")
        for entry in boot.blobs
    ]


def _run(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=False, timeout=120)


def attached_loop_devices() -> set[str]:
    listed = _run(["losetup", "--list", "--noheadings", "--output", "NAME"])
    return {line.strip() for line in listed.stdout.splitlines() if line.strip()}


@contextmanager
def _loop_device(image: Path) -> Iterator[str]:
    attached = _run(["losetup", "-f", "--show", "--read-only", str(image)])
    if attached.returncode != 0:
        raise RuntimeError(f"losetup {image}: {attached.stderr.strip()}")
    device = attached.stdout.strip()
    try:
        yield device
    finally:
        _run(["losetup", "-d", device])


@contextmanager
def mounted_rafs(bootstrap: Path, cache_images: Sequence[Path], mountpoint: Path) -> Iterator[Path]:
    """Mount `bootstrap` read-only with one loop device per cache image, in blob order.

    Unmounts and detaches every loop device on the way out, whatever happened inside.
    """
    with ExitStack() as stack:
        # The bootstrap gets its own loop device too: kernels before 6.12 mount EROFS from
        # block devices only, and a device we attached is one we surely detach.
        primary = stack.enter_context(_loop_device(bootstrap))
        devices = [stack.enter_context(_loop_device(image)) for image in cache_images]
        mountpoint.mkdir(parents=True, exist_ok=True)
        options = ",".join(["ro", *(f"device={d}" for d in devices)])
        mounted = _run(["mount", "-t", "erofs", "-o", options, primary, str(mountpoint)])
        if mounted.returncode != 0:
            raise RuntimeError(f"mount -t erofs {bootstrap}: {mounted.stderr.strip()}")
        try:
            yield mountpoint
        finally:
            # A lazy unmount still detaches when a test left a file open in the tree.
            if _run(["umount", str(mountpoint)]).returncode != 0:
                _run(["umount", "-l", str(mountpoint)])


@dataclass(frozen=True)
class FsckResult:
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def fsck_erofs(
    bootstrap: Path, cache_images: Sequence[Path], extract_to: Path | None = None
) -> FsckResult:
    """Run fsck.erofs with `--device=` per cache image in blob order.

    Plain fsck reads metadata only; `extract_to` adds `--extract`, which reads every file's
    data and so catches a chunk address past its device.
    """
    args = ["fsck.erofs", *(f"--device={image}" for image in cache_images)]
    if extract_to is not None:
        args.append(f"--extract={extract_to}")
    done = _run([*args, str(bootstrap)])
    return FsckResult(done.returncode, done.stdout + done.stderr)
