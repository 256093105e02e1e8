"""The work-dir budget counts the bytes really written, not the sizes a manifest declares.

A 4 MiB gzip can hold 4 GiB of zeros, and a manifest can declare any size: issue 12 watched such a
layer spill 4.1 GB under a 50 MiB budget. Every write to the work directory (the download, the
converter child's spill and output) now claims room from the conversion's reservation first: a
layer that cannot fit the whole budget stops there, terminally, naming the budget; one that only
finds the room held by other conversions is retried.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from converters.estargz import EstargzOptions
from converters.nydus import NydusOptions
from reconciler.controller.reconcile import is_terminal, is_transient
from reconciler.conversion.disk_budget import BudgetTooSmall, DiskBudget, WorkDirBusy
from reconciler.conversion.layer_process import convert_layer_file
from tests.support.acceld_process import acceld, registry_config
from tests.support.bad_images import Layer, push_layers
from tests.support.daemon_process import estargz_policy
from tests.support.images import OCI_MANIFEST, Entry, push_manifest, tar_bytes
from tests.support.registry_server import RunningRegistry
from tests.support.reliability import fallback_entries

MiB = 1 << 20


def _zeros_layer(uncompressed: int, piece: int = 64 * MiB) -> Layer:
    """A gzip'd tar of one file of zeros, made of gzip members repeated (cheap to build, and
    about 1,030:1 like the densest deflate)."""
    assert uncompressed % piece == 0
    info = tarfile.TarInfo("zeros")
    info.size = uncompressed
    info.mtime = 1_700_000_000
    header = info.tobuf(format=tarfile.PAX_FORMAT)
    zeros = gzip.compress(bytes(piece), compresslevel=9, mtime=0)
    count = uncompressed // piece
    trailer = bytes(2 * tarfile.BLOCKSIZE)
    blob = gzip.compress(header, mtime=0) + zeros * count + gzip.compress(trailer, mtime=0)
    diff_id = hashlib.sha256(header)
    block = bytes(piece)
    for _ in range(count):
        diff_id.update(block)
    diff_id.update(trailer)
    return Layer(blob, "sha256:" + diff_id.hexdigest())


def _write_source(tmp_path: Path, blob: bytes) -> Path:
    source = tmp_path / "source"
    source.write_bytes(blob)
    return source


def test_claims_grow_the_reservation_and_never_pass_the_budget() -> None:
    budget = DiskBudget(100)
    with budget.reserve(30) as room:
        assert room.claim(20) == 20
        assert (room.held, room.used, budget.used_bytes) == (30, 20, 30)
        assert room.claim(20, preferred=60) == 60
        assert (room.held, room.used, budget.used_bytes) == (80, 80, 80)
        room.release(50)
        assert room.claim(10, preferred=1000) == 70
        assert (room.held, room.used) == (100, 100)
        with pytest.raises(BudgetTooSmall, match="work directory budget 100 bytes is too small"):
            room.claim(1)
    assert budget.used_bytes == 0


def test_room_held_by_another_conversion_is_a_retryable_refusal() -> None:
    budget = DiskBudget(100)
    with budget.reserve(70), budget.reserve(10) as room:
        assert room.claim(30) == 30
        with pytest.raises(WorkDirBusy) as raised:
            room.claim(1)
    assert is_transient(raised.value)
    assert not is_terminal(raised.value)
    assert budget.used_bytes == 0


@pytest.mark.parametrize(
    ("format", "options"),
    [("estargz", EstargzOptions(workers=2)), ("nydus", NydusOptions(workers=2))],
)
def test_the_child_stops_writing_at_the_budget(
    tmp_path: Path, format: str, options: EstargzOptions | NydusOptions
) -> None:
    """A file of random bytes does not compress: nydus' output and eStargz' spill and output
    all outgrow an 8 MiB budget, and the child is stopped before they do."""
    data = os.urandom(24 * MiB)
    source = _write_source(
        tmp_path, gzip.compress(tar_bytes([Entry("noise", data=data)]), compresslevel=1)
    )
    budget = DiskBudget(8 * MiB + len(source.read_bytes()))
    with budget.reserve(0) as room:
        room.claim(source.stat().st_size)
        with pytest.raises(BudgetTooSmall) as raised:
            convert_layer_file(
                source, tmp_path / "out", format, options, tmp_path, timeout=120, room=room
            )
        assert room.held <= budget.total_bytes
    assert is_terminal(raised.value)
    assert f"work directory budget {budget.total_bytes} bytes is too small" in str(raised.value)
    assert (tmp_path / "out").stat().st_size <= 8 * MiB


def test_a_layer_finding_the_room_held_by_others_stops_and_is_retried(tmp_path: Path) -> None:
    source = _write_source(tmp_path, _zeros_layer(64 * MiB).blob)
    budget = DiskBudget(48 * MiB)
    with budget.reserve(40 * MiB), budget.reserve(0) as room:
        with pytest.raises(WorkDirBusy) as raised:
            convert_layer_file(
                source,
                tmp_path / "out",
                "estargz",
                EstargzOptions(workers=1),
                tmp_path,
                timeout=120,
                room=room,
            )
        assert budget.used_bytes <= budget.total_bytes
    assert is_transient(raised.value)


def _bytes_under(work: Path) -> int:
    """What is in `work` now: its files, and the unlinked spill files processes hold open."""
    total = 0
    for directory, _, files in os.walk(work):
        for name in files:
            with suppress(FileNotFoundError):
                total += os.lstat(os.path.join(directory, name)).st_size
    prefix = str(work) + "/"
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if b"layer_process" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = f"/proc/{pid}/fd/{fd}"
                target = os.readlink(link)
                if target.startswith(prefix) and target.endswith("(deleted)"):
                    total += os.stat(link).st_size
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


@contextmanager
def _peak_of(work: Path) -> Iterator[list[int]]:
    """The largest `_bytes_under(work)` seen while the block runs, sampled every few ms."""
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _bytes_under(work))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


def test_a_4_mib_gzip_of_4_gib_of_zeros_declared_as_1_byte_is_quarantined_naming_the_budget(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    layer = _zeros_layer(4 << 30)
    assert len(layer.blob) < 5 * MiB
    honest = push_layers(registry.url, "zerobomb/zeros", "", [layer])
    manifest = {**honest.manifest, "layers": [{**honest.manifest["layers"][0], "size": 1}]}
    lying = push_manifest(
        registry.url, "zerobomb/zeros", "v1", json.dumps(manifest).encode(), OCI_MANIFEST
    )
    budget = 50 * MiB
    config = registry_config(
        tmp_path,
        registry.host,
        [estargz_policy("zerobomb", "zerobomb")],
        work_dir_budget=f"{budget}B",
    )

    with _peak_of(tmp_path / "work") as peak:
        refused = acceld("backfill", "--config", str(config), "--output", "json")

    assert refused.returncode == 1, refused.stderr
    (result,) = json.loads(refused.stdout)["results"]
    assert result["key"] == f"zerobomb/zeros@{lying}#estargz"
    assert result["ok"] is False
    assert f"work directory budget {budget} bytes is too small" in result["detail"]
    status = json.loads(acceld("status", "--config", str(config), "--output", "json").stdout)
    reasons = {q["key"]: q["reason"] for q in status["quarantined"]}
    assert (
        f"work directory budget {budget} bytes is too small"
        in reasons[f"zerobomb/zeros@{lying}#estargz"]
    )
    assert 0 < peak[0] <= budget, peak[0]
    assert fallback_entries(registry.url, "zerobomb/zeros", lying) == []
