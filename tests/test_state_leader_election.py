"""Two processes electing a scan leader over one state database, on each backend."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from reconciler.state.leader_election import LeaderElection
from reconciler.state.store import LeaderLease, LeaderLeases, StateError
from tests.support.clock import FakeClock
from tests.support.daemon_process import wait_until
from tests.support.state_backends import StateBackend

pytest_plugins = ("tests.support.state_fixtures",)


def test_one_of_two_leads_and_the_other_takes_over_when_the_first_stops_renewing(
    state_backend: StateBackend,
) -> None:
    clock = FakeClock()
    leases = state_backend.open(clock).leaders
    first = LeaderElection(leases, "scan", "host-a", lease_seconds=60, renew_seconds=15)
    second = LeaderElection(leases, "scan", "host-b", lease_seconds=60, renew_seconds=15)
    assert first.step()
    assert not second.step()
    clock.advance(15)
    assert first.step()
    clock.advance(60)
    assert not second.step()
    clock.advance(1)
    assert second.step()
    assert not first.step()


def test_taking_the_lease_calls_on_lead_once_per_takeover(state_backend: StateBackend) -> None:
    clock = FakeClock()
    leases = state_backend.open(clock).leaders
    took: list[str] = []
    first = LeaderElection(leases, "scan", "host-a", lease_seconds=60, renew_seconds=15)
    second = LeaderElection(
        leases,
        "scan",
        "host-b",
        lease_seconds=60,
        renew_seconds=15,
        on_lead=lambda: took.append("b"),
    )
    assert first.step()
    assert not second.step()
    clock.advance(61)
    assert second.step()
    assert second.step()
    assert took == ["b"]


def test_stopping_gives_the_lease_up_at_once(state_backend: StateBackend) -> None:
    leases = state_backend.open(FakeClock()).leaders
    first = LeaderElection(leases, "scan", "host-a", lease_seconds=60, renew_seconds=0.05)
    second = LeaderElection(leases, "scan", "host-b", lease_seconds=60, renew_seconds=0.05)
    first.start()
    second.start()
    assert first.leading()
    assert not second.leading()
    first.stop()
    assert not first.leading()
    wait_until(second.leading, 5.0, "the second process to take the lease over")
    second.stop()
    assert leases.leaders() == []


class _Breakable:
    """Leader leases whose database stops answering when `broken` is set."""

    def __init__(self, leases: LeaderLeases) -> None:
        self.leases = leases
        self.broken = False

    def hold(self, name: str, holder: str, seconds: float) -> bool:
        if self.broken:
            raise StateError("postgresql://db:5432/acceld: connection refused")
        return self.leases.hold(name, holder, seconds)

    def give_up(self, name: str, holder: str) -> None:
        self.leases.give_up(name, holder)

    def leaders(self) -> list[LeaderLease]:
        return self.leases.leaders()


def test_a_holder_that_cannot_reach_the_database_stops_leading(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    leases = _Breakable(
        StateBackend("sqlite", str(tmp_path / "state.db")).open(FakeClock()).leaders
    )
    election = LeaderElection(leases, "scan", "host-a")
    assert election.step()
    leases.broken = True
    with caplog.at_level(logging.WARNING):
        assert not election.step()
    assert "leader lease not renewed" in caplog.messages
