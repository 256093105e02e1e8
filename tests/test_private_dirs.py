"""Local attackers of issue 12: a world-writable work directory let another user plant a
symlinked `proc-*` area or swap a `layer-*` directory (see `test_layer_process_isolation.py`),
and the state files were 0644. The work directory, each area and the state directory are now
refused unless they are this user's alone, and state files are created 0600."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.conversion.work_area import own_area
from reconciler.state.clock import SystemClock
from reconciler.state.private_dirs import UnsafeDirectory
from reconciler.state.sqlite_database import state_db_path
from reconciler.state.sqlite_state import open_sqlite_state
from tests.support.acceld_process import acceld, registry_config
from tests.support.daemon_process import estargz_policy
from tests.support.registry_server import RunningRegistry

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
OTHER_UID = 64_123


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_world_writable_work_dir_is_refused_at_start_with_one_clear_line(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    config = registry_config(tmp_path, registry.host, [estargz_policy("any", "any")])
    work = tmp_path / "work"
    work.mkdir()
    work.chmod(0o777)

    refused = acceld("backfill", "--config", str(config))

    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"acceld: error: work_dir {work} is writable by its group or others (mode 0777); "
        "chmod go-w it, 0700 is best"
    ]
    assert list(work.iterdir()) == []


def test_a_pre_created_symlinked_area_is_refused_and_nothing_goes_where_it_points(
    tmp_path: Path,
) -> None:
    work, attacker = tmp_path / "work", tmp_path / "attacker"
    work.mkdir(mode=0o700)
    attacker.mkdir()
    (work / f"proc-{os.getpid()}").symlink_to(attacker)

    with pytest.raises(UnsafeDirectory, match=f"work area {work}/proc-{os.getpid()} is a symlink"):
        own_area(work)

    assert list(attacker.iterdir()) == []


def test_a_symlinked_area_of_a_dead_process_is_not_followed_when_clearing(tmp_path: Path) -> None:
    work, attacker = tmp_path / "work", tmp_path / "attacker"
    work.mkdir(mode=0o700)
    attacker.mkdir()
    (attacker / "precious").write_text("keep me")
    (work / "proc-999999999").symlink_to(attacker)

    area = own_area(work)

    assert (attacker / "precious").read_text() == "keep me"
    assert stat.S_IMODE(area.stat().st_mode) == 0o700


@as_root
def test_a_work_dir_or_area_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    os.chown(work, OTHER_UID, OTHER_UID)
    with pytest.raises(UnsafeDirectory, match=f"owned by uid {OTHER_UID}"):
        own_area(work)

    os.chown(work, os.geteuid(), os.getegid())
    theirs = work / f"proc-{os.getpid()}"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, OTHER_UID, OTHER_UID)
    with pytest.raises(UnsafeDirectory, match=f"work area {theirs} is owned by uid {OTHER_UID}"):
        own_area(work)


def test_a_work_dir_given_as_a_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "work").symlink_to(real)

    with pytest.raises(UnsafeDirectory, match="is a symlink"):
        own_area(tmp_path / "work")


def test_a_state_dir_that_others_can_change_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(UnsafeDirectory, match=r"state_dir .* writable by its group or others"):
        state_db_path(shared, must_exist=False)

    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(UnsafeDirectory, match=r"state_dir .* is a symlink"):
        state_db_path(tmp_path / "link", must_exist=False)


@pytest.mark.usefixtures("umask_022")
def test_state_files_are_created_0600_under_umask_022(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = open_sqlite_state(state_db_path(state, must_exist=False), SystemClock())
    try:
        store.layers.get("sha256:" + "a" * 64, "estargz", "options")
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state.iterdir()}
    finally:
        store.close()

    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert modes == {"state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600}
