"""The parts every long or one-shot command shares, built from one config.

The state store, the metrics, the disk budget and the work area live as long as the process;
the source, the referrer reader and the reconciler depend on the config (credentials, policies,
limits) and are built again, all together, when a reload brings a new one.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from policies.model import SUPPORTED_FORMATS
from reconciler.config import Config
from reconciler.controller.observed_formats import ReferrerFormats
from reconciler.controller.reconcile import Reconciler
from reconciler.controller.sources import Source
from reconciler.conversion.disk_budget import DiskBudget
from reconciler.conversion.image_conversion import RegistryImages
from reconciler.conversion.work_area import own_area
from reconciler.observability.metrics import Metrics
from reconciler.service.clients import build_source
from reconciler.state.clock import Clock, SystemClock
from reconciler.state.store import StateStore
from reconciler.state_config import open_state


def owner_id(role: str) -> str:
    """Who holds a lease: unique per process start, readable in `acceld status`."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def open_store(config: Config, clock: Clock) -> StateStore:
    return open_state(config.state, clock)


@dataclass(frozen=True)
class Runtime:
    """What a command works with. Replace it whole (`reconfigured`), never a field of it."""

    config: Config
    store: StateStore
    clock: Clock
    """The one clock of the store, the work queue and the scan marks."""
    metrics: Metrics
    budget: DiskBudget
    work_dir: Path
    source: Source
    referrer_formats: ReferrerFormats
    """Which accelerated formats an original's referrers are, through the source's client."""
    reconciler: Reconciler

    def close(self) -> None:
        self.store.close()
        shutil.rmtree(self.work_dir, ignore_errors=True)


def reconfigured(runtime: Runtime, config: Config) -> Runtime:
    """`runtime` with every config-dependent part built from `config`: a rotated robot secret
    reaches the source, the referrer reads and the reconciler's pushes alike."""
    return _assemble(
        config, runtime.store, runtime.clock, runtime.metrics, runtime.budget, runtime.work_dir
    )


def open_runtime(config: Config, collector: CollectorRegistry | None = None) -> Runtime:
    """Everything built from `config`; metrics go to `collector` (a fresh one by default)."""
    metrics = Metrics(
        collector if collector is not None else CollectorRegistry(),
        formats=SUPPORTED_FORMATS,
        policies=[p.name for p in config.policies if p.enabled],
    )
    clock = SystemClock()
    return _assemble(
        config,
        open_store(config, clock),
        clock,
        metrics,
        DiskBudget(config.work_dir_budget_bytes),
        own_area(config.work_dir),
    )


def _assemble(
    config: Config,
    store: StateStore,
    clock: Clock,
    metrics: Metrics,
    budget: DiskBudget,
    work_dir: Path,
) -> Runtime:
    source = build_source(config.source, metrics)
    referrer_formats = ReferrerFormats(source.registry, store.classifications)
    reconciler = Reconciler(
        source,
        config.policies,
        referrer_formats,
        RegistryImages(source.registry, work_dir=work_dir, layer_cache=store.layers),
        budget=budget,
        limits=config.limits,
    )
    return Runtime(
        config, store, clock, metrics, budget, work_dir, source, referrer_formats, reconciler
    )
