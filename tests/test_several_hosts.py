"""Three `acceld serve` processes share one PostgreSQL database and the real registry: a host
killed in the middle of a conversion and the scan leader killed after its scan lose nothing,
convert nothing twice, and another host takes over the scans.

Leases last 8 s here (`state.lease_period`), not 60 s, so a dead host's key comes back within
seconds; everything else is the deployed daemon.
"""

from __future__ import annotations

import signal
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.acceld_process import registry_config
from tests.support.daemon_process import DaemonProcess, loopback_listen, sample, wait_until
from tests.support.images import PushedImage
from tests.support.postgres_server import RunningPostgres
from tests.support.registry_server import RunningRegistry
from tests.support.reliability import (
    assert_converged,
    assert_pushed_once,
    converted_everywhere,
    fallback_entries,
    push_distinct_images,
    queue_counts,
    status_of,
)

pytest_plugins = ("tests.support.state_fixtures",)

HOSTS = 3
IMAGES_BEFORE = 25
IMAGES_AFTER = 5
LAYER_BYTES = 8 << 20
LEASE_PERIOD = "8s"
DSN_ENV = "ACCELD_STATE_DSN"


def _host_config(directory: Path, registry: RunningRegistry, project: str, listen: str) -> Path:
    """One host's config: its own state and work directories, the shared database, a full scan
    at start and an incremental one every 3 s (scans of a plain registry are all full)."""
    directory.mkdir()
    return registry_config(
        directory,
        registry.host,
        [{"name": "hosts", "projects": [project], "formats": ["estargz"]}],
        server={"listen": listen},
        workers=1,
        scan={"full_interval": "1h", "incremental_interval": "3s"},
        state={"backend": "postgresql", "dsn_env": DSN_ENV, "lease_period": LEASE_PERIOD},
    )


@pytest.fixture
def shared_dsn(postgres: RunningPostgres) -> str:
    return postgres.dsn(postgres.create_database())


def _start_hosts(
    stack: ExitStack, tmp_path: Path, registry: RunningRegistry, project: str, dsn: str
) -> list[tuple[DaemonProcess, Path]]:
    hosts = []
    for number in range(HOSTS):
        listen = loopback_listen()
        config = _host_config(tmp_path / f"host{number}", registry, project, listen)
        daemon = stack.enter_context(DaemonProcess(config, listen, env={DSN_ENV: dsn}))
        hosts.append((daemon, config))
    for daemon, _ in hosts:
        daemon.wait_ready(timeout=60)
    return hosts


def _leader(hosts: list[tuple[DaemonProcess, Path]]) -> DaemonProcess:
    def leading() -> list[DaemonProcess]:
        return [daemon for daemon, _ in hosts if "msg=leading " in daemon.log_text()]

    (leader,) = wait_until(leading, 30, "one scan leader")
    return leader


def _held_by(config: Path, env: dict[str, str], pid: int) -> list[dict[str, str]]:
    """The keys `acceld status` shows in progress in process `pid`."""
    document, _ = status_of(config, env)
    in_progress = document["in_progress"]
    assert isinstance(in_progress, list)
    return [item for item in in_progress if item["pid"] == pid]


def _exporting_the_queue(hosts: list[tuple[DaemonProcess, Path]]) -> list[DaemonProcess]:
    return [
        daemon
        for daemon, _ in hosts
        if any(name == "acceld_queue_depth" for name, _ in daemon.samples())
    ]


def _kill(daemon: DaemonProcess) -> None:
    daemon.send(signal.SIGKILL)
    daemon.wait_exit(timeout=10)


@pytest.mark.slow
def test_three_hosts_converge_after_a_host_and_the_scan_leader_are_killed(
    registry: RunningRegistry, shared_dsn: str, tmp_path: Path
) -> None:
    env = {DSN_ENV: shared_dsn}
    project = "hosts"
    images: list[PushedImage] = push_distinct_images(
        registry.url, project, IMAGES_BEFORE, size=LAYER_BYTES, seed=14
    )
    with ExitStack() as stack:
        hosts = _start_hosts(stack, tmp_path, registry, project, shared_dsn)
        leader = _leader(hosts)
        others = [(daemon, config) for daemon, config in hosts if daemon is not leader]
        (victim, config), (survivor, _) = others

        # Killed as it starts a conversion: the key it holds stays leased to a dead process.
        mark = victim.log_line_count()
        victim.wait_for_log('msg="reconcile started"', timeout=60, after=mark)
        _kill(victim)
        (held,) = _held_by(config, env, victim.pid)
        assert fallback_entries(registry.url, held["repository"], held["digest"]) == []
        leader.wait_for_log('msg="scan finished"', timeout=60)
        # The shared queue's depth is exported once, by the leader, not once per host.
        live = [(daemon, config) for daemon, config in hosts if daemon is not victim]
        wait_until(lambda: _exporting_the_queue(live) == [leader], 20, "the leader alone exporting")

        # The leader goes too; what is pushed now only a new leader's scan can find.
        _kill(leader)
        mark = survivor.log_line_count()
        images += push_distinct_images(
            registry.url, f"{project}/late", IMAGES_AFTER, size=LAYER_BYTES, seed=41
        )
        survivor.wait_for_log("msg=leading ", timeout=30, after=mark)
        taken_over = survivor.log_line_count()
        survivor.wait_for_log('msg="scan finished"', timeout=30, after=taken_over)

        wait_until(lambda: converted_everywhere(registry.url, images), 120, "every image converted")
        idle = {"pending": 0, "in_progress": 0, "quarantined": 0}
        wait_until(lambda: queue_counts(config, env) == idle, 20, "an idle queue")
        document, _ = status_of(config, env)
        leaders = [(lease["name"], lease["holder"]) for lease in document["leaders"]]  # type: ignore[attr-defined]
        assert leaders == [("scan", _holder(survivor))]
        assert sample(survivor.samples(), "acceld_scan_leader") == 1
        assert survivor.stop() == 0
    # The dead host's key came back after its lease ran out, its attempt counted as failed.
    started = [line for line in survivor.log_text().splitlines() if "reconcile started" in line]
    assert any(f"key={held['key']} " in line and "attempts=1" in line for line in started)

    assert_pushed_once(registry.url, registry.log_text(), images)
    assert_converged(registry.url, images, tmp_path / "pulled")


def _holder(daemon: DaemonProcess) -> str:
    line = daemon.wait_for_log("msg=leading ")
    return line.split("holder=", 1)[1].split()[0]
