"""`acceld serve`: run the daemon until SIGTERM."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from reconciler.commands.config_option import config_option
from reconciler.config import config_path, load_config
from reconciler.observability.logs import configure_logging
from reconciler.service.daemon import Daemon


@click.command("serve")
@config_option
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--grace-seconds",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="How long running conversions may finish after SIGTERM.",
)
def serve_command(config_file: Path | None, log_format: str, grace_seconds: float) -> None:
    """Serve webhooks, scan on a schedule and convert what is missing."""
    configure_logging("json" if log_format == "json" else "text")
    # APScheduler logs every job run at INFO; the scans log their own line.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    path = config_path(config_file)
    daemon = Daemon(load_config(path), config_path=path, grace_seconds=grace_seconds)
    daemon.install_signal_handlers()
    daemon.start()
    status = daemon.run()
    # run() has stopped intake, waited out the grace period and saved the queue. A scheduler
    # thread still inside a request (a scan or probe against a Harbor that stopped answering)
    # would hold a normal exit for as long as its timeouts and retries last, past systemd's
    # stop timeout: leave without waiting for it.
    logging.shutdown()
    sys.stdout.flush()
    os._exit(status)
