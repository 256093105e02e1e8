"""`acceld serve`: run the daemon until SIGTERM."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from reconciler.commands.config_option import config_option
from reconciler.config import ServerConfig, config_path, is_loopback, load_config
from reconciler.observability.logs import configure_logging
from reconciler.service.daemon import Daemon

log = logging.getLogger(__name__)


def exposure_warnings(server: ServerConfig) -> list[str]:
    """What an operator should hear at start about how the listener is exposed."""
    warnings = []
    if server.tls_cert is None and not is_loopback(server.listen_host):
        warnings.append(
            "listening on an address that is not loopback without TLS: the webhook secret "
            "crosses the network in clear text (set server.tls_cert and tls_key, or put a TLS "
            "proxy in front and listen on 127.0.0.1)"
        )
    if server.webhook_secret is None:
        warnings.append(
            "no server.webhook_secret: every webhook is refused with 401 and only the scheduled "
            "scans find new images (set webhook_secret_file, _env or _credential, then run "
            "acceld harbor setup)"
        )
    return warnings


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
    config = load_config(path)
    for warning in exposure_warnings(config.server):
        log.warning(warning, extra={"listen": f"{config.server.listen_host}"})
    daemon = Daemon(config, config_path=path, grace_seconds=grace_seconds)
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
