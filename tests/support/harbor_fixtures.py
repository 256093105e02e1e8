"""Fixtures for tests that run acceld against the Harbor emulator; a test module asks for them
with `pytest_plugins = ("tests.support.harbor_fixtures",)`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.support.harbor_emulator import (
    ADMIN,
    ADMIN_PASSWORD,
    RunningHarbor,
    harbor_session,
    start_harbor_emulator,
)
from tests.support.registry_server import RunningRegistry


@pytest.fixture
def harbor(registry: RunningRegistry) -> Iterator[RunningHarbor]:
    """The Harbor emulator over the session's real registry."""
    running = start_harbor_emulator(registry.url)
    yield running
    running.stop()


@pytest.fixture
def admin() -> requests.Session:
    """Harbor's admin, who pushes test images and sets up webhook policies."""
    return harbor_session(ADMIN, ADMIN_PASSWORD)
