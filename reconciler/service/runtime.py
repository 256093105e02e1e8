"""The parts every long or one-shot command shares, built from one config."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from policies.model import SUPPORTED_FORMATS
from reconciler.config import Config, HarborSource
from reconciler.controller.observed_formats import ReferrerFormats
from reconciler.controller.reconcile import Reconciler
from reconciler.controller.sources import HarborSource as HarborOriginals
from reconciler.controller.sources import RegistrySource as RegistryOriginals
from reconciler.controller.sources import Source
from reconciler.conversion.disk_budget import DiskBudget
from reconciler.conversion.work_area import own_area
from reconciler.observability.metrics import Metrics
from reconciler.state.sqlite_store import SqliteStateStore, state_db_path


def owner_id(role: str) -> str:
    """Who holds a lease: unique per process start, readable in `acceld status`."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def open_store(config: Config) -> SqliteStateStore:
    return SqliteStateStore(state_db_path(config.state_dir, must_exist=False))


def build_source(config: Config, metrics: Metrics | None) -> Source:
    observer = metrics.request_observer() if metrics is not None else None
    if isinstance(config.source, HarborSource):
        return HarborOriginals(
            config.source.harbor_client(observer), config.source.registry_client(observer)
        )
    return RegistryOriginals(config.source.registry_client(observer))


@dataclass
class Runtime:
    config: Config
    store: SqliteStateStore
    metrics: Metrics
    source: Source
    formats: ReferrerFormats
    budget: DiskBudget
    work_dir: Path

    def reconciler(self) -> Reconciler:
        return Reconciler(
            self.source,
            self.config.policies,
            self.formats,
            self.store,
            work_dir=self.work_dir,
            budget=self.budget,
            limits=self.config.limits,
        )

    def close(self) -> None:
        self.store.close()
        shutil.rmtree(self.work_dir, ignore_errors=True)


def open_runtime(config: Config, registry: CollectorRegistry | None = None) -> Runtime:
    metrics = Metrics(
        registry if registry is not None else CollectorRegistry(),
        formats=SUPPORTED_FORMATS,
        policies=[p.name for p in config.policies if p.enabled],
    )
    store = open_store(config)
    source = build_source(config, metrics)
    return Runtime(
        config=config,
        store=store,
        metrics=metrics,
        source=source,
        formats=ReferrerFormats(source.registry, store),
        budget=DiskBudget(config.work_dir_budget_bytes),
        work_dir=own_area(config.work_dir),
    )
