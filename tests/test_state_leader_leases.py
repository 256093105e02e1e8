"""One scan leader at a time, on each backend: a lease taken, kept, given up and taken over."""

from __future__ import annotations

import pytest

from reconciler.state.store import LeaderLeases
from tests.support.clock import FakeClock
from tests.support.state_backends import StateBackend

pytest_plugins = ("tests.support.state_fixtures",)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def leases(state_backend: StateBackend, clock: FakeClock) -> LeaderLeases:
    return state_backend.open(clock).leaders


def test_one_holder_at_a_time_until_its_lease_expires(
    leases: LeaderLeases, clock: FakeClock
) -> None:
    assert leases.hold("scan", "host-a", 30)
    assert not leases.hold("scan", "host-b", 30)
    clock.advance(30)
    assert not leases.hold("scan", "host-b", 30)
    clock.advance(0.5)
    assert leases.hold("scan", "host-b", 30)
    assert not leases.hold("scan", "host-a", 30)
    (lease,) = leases.leaders()
    assert (lease.name, lease.holder, lease.expires_at) == ("scan", "host-b", clock.now() + 30)


def test_the_holder_keeps_its_lease_by_taking_it_again(
    leases: LeaderLeases, clock: FakeClock
) -> None:
    assert leases.hold("scan", "host-a", 30)
    for _ in range(5):
        clock.advance(20)
        assert leases.hold("scan", "host-a", 30)
        assert not leases.hold("scan", "host-b", 30)


def test_giving_up_lets_another_take_over_at_once(leases: LeaderLeases) -> None:
    assert leases.hold("scan", "host-a", 30)
    leases.give_up("scan", "host-b")
    assert not leases.hold("scan", "host-b", 30)
    leases.give_up("scan", "host-a")
    assert leases.hold("scan", "host-b", 30)


def test_names_are_independent(leases: LeaderLeases) -> None:
    assert leases.hold("full-scan", "host-a", 30)
    assert leases.hold("incremental-scan", "host-b", 30)
    assert [(lease.name, lease.holder) for lease in leases.leaders()] == [
        ("full-scan", "host-a"),
        ("incremental-scan", "host-b"),
    ]


def test_a_lease_of_no_time_is_refused(leases: LeaderLeases) -> None:
    with pytest.raises(ValueError, match="longer than 0 s"):
        leases.hold("scan", "host-a", 0)
