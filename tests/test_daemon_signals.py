"""`acceld serve` as a real process under the signals an operator and systemd send: SIGTERM in
the middle of a conversion, SIGHUP with a broken and with a valid config, and the sd_notify
messages that go with them."""

from __future__ import annotations

import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.daemon_process import (
    PERMISSIONS,
    ROBOT_SECRET,
    ROBOT_SECRET_ENV,
    WEBHOOK_SECRET,
    WEBHOOK_SECRET_ENV,
    DaemonProcess,
    accessories_of,
    edit_config,
    estargz_policy,
    sample,
    secret_files,
    set_up_serving,
    wait_until,
)
from tests.support.fault_proxy import Fault, FaultProxy, FaultRule
from tests.support.harbor_emulator import RunningHarbor
from tests.support.images import Entry, push_image
from tests.support.registry_log import parse_access_log, writes_to_manifests
from tests.support.registry_server import RunningRegistry
from tests.support.secret_scan import find_secrets

pytest_plugins = ("tests.support.harbor_fixtures",)
CONVERSIONS = "acceld_conversions_total"
DOWNLOAD_DELAY_SECONDS = 4.0
SCAN_STEP_SECONDS = 3.0


def converted(daemon: DaemonProcess) -> float:
    return sample(daemon.samples(), CONVERSIONS, format="estargz", result="success")


def test_sigterm_mid_conversion_gives_the_key_back_and_a_restart_converts_it_once(
    registry: RunningRegistry, harbor: RunningHarbor, admin: requests.Session, tmp_path: Path
) -> None:
    with FaultProxy(harbor.host) as proxy:
        policies = [estargz_policy("slow", "slow")]
        setup = set_up_serving(harbor, admin, tmp_path, ["slow"], policies, source_url=proxy.url)
        image = push_image(harbor.url, "slow/app", "v1", session=admin)
        # Every read of its first layer stalls, so a conversion is surely running at SIGTERM.
        rule = FaultRule(
            Fault.SLOW,
            methods=frozenset({"GET"}),
            path=f"/blobs/{image.layer_digests[0]}$",
            delay_seconds=DOWNLOAD_DELAY_SECONDS,
        )
        proxy.set_rules([rule])

        def run(grace: str) -> DaemonProcess:
            daemon = setup.start(args=("--grace-seconds", grace))
            daemon.wait_for_log('"reconcile started"')
            time.sleep(1)
            assert converted(daemon) == 0
            return daemon

        with run("0.5") as first:
            started = time.monotonic()
            assert first.stop() == 0
            assert time.monotonic() - started < DOWNLOAD_DELAY_SECONDS
        first.wait_for_log('"released unfinished key"', timeout=1)
        assert accessories_of(harbor, image) == []

        with run("30") as second:
            assert second.stop() == 0
        assert "msg=converted" in second.log_text()
        assert second.log_text().index("msg=converted") < second.log_text().index("msg=stopped")

        with setup.start() as third:
            third.wait_for_log('"scan finished"')
            time.sleep(0.5)
            assert converted(third) == 0
            assert third.stop() == 0
    assert "missing=0" in third.wait_for_log('"scan finished"')
    (accessory,) = accessories_of(harbor, image)
    logged = parse_access_log(registry.log_text())
    assert len(writes_to_manifests(logged, image.repository, [accessory])) == 1


def test_sigterm_during_a_scan_stops_the_scan_at_its_next_step(
    harbor: RunningHarbor, admin: requests.Session, tmp_path: Path
) -> None:
    with FaultProxy(harbor.host) as proxy:
        # Nothing the scan sees is wanted, so nothing cuts it short but the stop.
        policies = [{**estargz_policy("scanned", "scanned"), "tags": ["release-*"]}]
        setup = set_up_serving(harbor, admin, tmp_path, ["scanned"], policies, source_url=proxy.url)
        for number in range(4):
            push_image(harbor.url, f"scanned/app{number}", "v1", session=admin)
        # Each repository's artifact list takes this long: the whole scan takes four times it.
        slow_list = FaultRule(
            Fault.SLOW,
            methods=frozenset({"GET"}),
            path="/artifacts$",
            delay_seconds=SCAN_STEP_SECONDS,
        )
        proxy.set_rules([slow_list])
        with setup.start() as daemon:
            time.sleep(1)
            started = time.monotonic()
            assert daemon.stop() == 0
            seconds = time.monotonic() - started
    log = daemon.log_text()
    assert seconds < 2 * SCAN_STEP_SECONDS, log
    assert "Traceback" not in log
    assert log.index('"scan stopped"') < log.index("msg=stopped")


def test_sighup_keeps_a_running_config_over_a_broken_one_and_applies_a_valid_one(
    harbor: RunningHarbor, admin: requests.Session, tmp_path: Path
) -> None:
    kept_policy = estargz_policy("kept", "kept")
    setup = set_up_serving(harbor, admin, tmp_path, ["kept", "added"], [kept_policy])
    with setup.start() as daemon:
        daemon.wait_for_log('"scan finished"')
        broken = {**estargz_policy("broken", "added"), "tags": ["[v*"]}
        edit_config(setup.config, policies=[kept_policy, broken])
        daemon.send(signal.SIGHUP)
        failed = daemon.wait_for_log('"reload failed; keeping the running config"')
        assert 'policies[1] \\"broken\\": tags[0]: invalid glob' in failed
        assert daemon.get("/readyz").status_code == 200

        kept = push_image(harbor.url, "kept/app", "v1", session=admin)
        early = push_image(
            harbor.url, "added/app", "v1", [[Entry("early", data=b"1")]], session=admin
        )
        daemon.wait_for_sample(CONVERSIONS, 1, format="estargz", result="success")
        assert len(accessories_of(harbor, kept)) == 1

        edit_config(
            setup.config, policies=[kept_policy, estargz_policy("added", "added")], workers=3
        )
        seen = daemon.log_line_count()
        daemon.send(signal.SIGHUP)
        daemon.wait_for_log("msg=reloaded", after=seen)
        restart = daemon.wait_for_log("restart to apply them", after=seen)
        assert "settings=workers" in restart
        late = push_image(
            harbor.url, "added/app", "v2", [[Entry("late", data=b"2")]], session=admin
        )
        daemon.wait_for_sample(CONVERSIONS, 2, format="estargz", result="success")
        assert len(accessories_of(harbor, late)) == 1
        # Pushed while the broken config was refused: the old policies did not want it.
        assert accessories_of(harbor, early) == []
        assert daemon.process.poll() is None
        assert daemon.stop() == 0


def test_sighup_rotates_the_robot_and_webhook_secrets(
    harbor: RunningHarbor, admin: requests.Session, tmp_path: Path
) -> None:
    setup = set_up_serving(
        harbor,
        admin,
        tmp_path,
        ["rotated"],
        [estargz_policy("r", "rotated")],
        secrets_in_files=True,
    )
    with setup.start(env={ROBOT_SECRET_ENV: "", WEBHOOK_SECRET_ENV: ""}) as daemon:
        daemon.wait_for_log('"scan finished"')
        before = push_image(harbor.url, "rotated/before", "v1", session=admin)
        daemon.wait_for_sample(CONVERSIONS, 1, format="estargz", result="success")

        new_robot, new_webhook = ROBOT_SECRET + "-rotated", WEBHOOK_SECRET + "-rotated"
        state = harbor.emulator.state
        state.add_robot("acceld", new_robot, PERMISSIONS)
        with state.lock:
            for policy in state.projects["rotated"].policies.values():
                policy["targets"][0]["auth_header"] = new_webhook
        robot_file, webhook_file = secret_files(setup.config)
        robot_file.write_text(new_robot + "\n")
        webhook_file.write_text(new_webhook + "\n")
        seen = daemon.log_line_count()
        daemon.send(signal.SIGHUP)
        daemon.wait_for_log("msg=reloaded", after=seen)

        after = push_image(
            harbor.url, "rotated/after", "v1", [[Entry("after", data=b"3")]], session=admin
        )
        daemon.wait_for_sample(CONVERSIONS, 2, format="estargz", result="success")
        assert [len(accessories_of(harbor, image)) for image in (before, after)] == [1, 1]
        delivery = harbor.emulator.deliveries[-1]
        assert delivery.status == 202
        stale = {**delivery.headers, "Authorization": WEBHOOK_SECRET}
        answer = requests.post(
            daemon.url + "/webhooks/harbor", data=delivery.body, headers=stale, timeout=5
        )
        assert answer.status_code == 401
        assert daemon.stop() == 0
    secrets = (ROBOT_SECRET, WEBHOOK_SECRET, new_robot, new_webhook)
    assert find_secrets({"daemon log": daemon.log_text()}, secrets) == []


class NotifyListener:
    """A unix datagram socket standing in for systemd's notify socket."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "notify"
        self.messages: list[list[str]] = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.path))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            with self._lock:
                self.messages.append(data.decode().split("\n"))

    def received(self) -> list[list[str]]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, field: str, timeout: float = 15.0, *, count: int = 1) -> list[list[str]]:
        def enough() -> list[list[str]] | None:
            found = [
                m for m in self.received() if field in m or any(f.startswith(field) for f in m)
            ]
            return found if len(found) >= count else None

        return wait_until(enough, timeout, f"{count} notify messages with {field!r}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


@pytest.fixture
def notify() -> Iterator[NotifyListener]:
    # A unix socket path is limited to 107 bytes: pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="acceld-notify-") as directory:
        listener = NotifyListener(Path(directory))
        yield listener
        listener.close()


def test_sd_notify_ready_status_watchdog_reloading_and_stopping(
    harbor: RunningHarbor, admin: requests.Session, tmp_path: Path, notify: NotifyListener
) -> None:
    setup = set_up_serving(harbor, admin, tmp_path, ["notified"], [estargz_policy("n", "notified")])
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
    with setup.start(env=env) as daemon:
        (ready,) = notify.wait_for("READY=1")
        assert ready == ["READY=1", "STATUS=serving"]
        statuses = notify.wait_for("STATUS=queue:")
        assert statuses[0] == ["STATUS=queue: 0 pending, 0 in progress, 0 quarantined"]
        notify.wait_for("WATCHDOG=1", count=3, timeout=5)

        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        daemon.send(signal.SIGHUP)
        (reloading,) = notify.wait_for("RELOADING=1")
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert reloading[0] == "RELOADING=1"
        name, _, usec = reloading[1].partition("=")
        assert name == "MONOTONIC_USEC"
        assert before <= int(usec) <= after
        notify.wait_for("READY=1", count=2)

        assert daemon.stop() == 0
    # The process is gone, but the listener thread may not have read its last datagram yet.
    notify.wait_for("STOPPING=1")
    messages = notify.received()
    assert messages[-1] == ["STOPPING=1"]
    firsts = [m[0] for m in messages]
    assert firsts.index("READY=1") < firsts.index("RELOADING=1") < firsts.index("STOPPING=1")
