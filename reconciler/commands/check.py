"""`acceld check`: validate the config and connect to the source, changing nothing."""

from __future__ import annotations

import re
from pathlib import Path

import click

from reconciler.commands.config_option import config_option
from reconciler.config import HarborSettings, load_config
from reconciler.service.clients import harbor_client, registry_client

# Harbor serves the referrers API (and answers OCI-Subject) from v2.8 on.
_MIN_HARBOR = (2, 8)
_VERSION = re.compile(r"v?(\d+)\.(\d+)")


@click.command("check")
@config_option
def check_command(config_file: Path | None) -> None:
    """Validate the config, then check the source answers and accepts the credentials."""
    config = load_config(config_file)
    enabled = [p.name for p in config.policies if p.enabled]
    click.echo(f"config {config.path}: ok ({len(enabled)} enabled policies: {', '.join(enabled)})")
    source = config.source
    if isinstance(source, HarborSettings):
        harbor = harbor_client(source)
        info = harbor.systeminfo()
        click.echo(f"harbor {source.url}: {info.harbor_version}, credentials accepted")
        found = _VERSION.match(info.harbor_version)
        if found and (int(found[1]), int(found[2])) < _MIN_HARBOR:
            raise click.ClickException(
                f"Harbor {info.harbor_version} has no referrers API; acceld needs v2.8 or newer"
            )
        projects = sum(1 for _ in harbor.projects())
        click.echo(f"harbor projects visible to {source.credentials.username}: {projects}")
    registry = registry_client(source)
    registry.ping()
    click.echo(f"registry {registry.host}: /v2/ answers, credentials accepted")
