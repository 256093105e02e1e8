from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.registry_server import RunningRegistry, start_registry

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SWAGGER = SHARED / "harbor" / "swagger.yaml"


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """One anonymous registry for the whole session; tests use their own repository names."""
    running = start_registry(tmp_path_factory.mktemp("registry"))
    yield running
    running.stop()
