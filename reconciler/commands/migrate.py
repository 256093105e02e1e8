"""`acceld migrate`: bring the state database's schema up to this acceld's version."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.commands.state_location import state_location_options, state_settings
from reconciler.state.clock import SystemClock
from reconciler.state_config import describe_state, open_state


@click.command("migrate")
@state_location_options
def migrate_command(config_file: Path | None, state_dir: Path | None) -> None:
    """Create or upgrade the state schema, then exit.

    `serve` and `backfill` migrate on start too, one host at a time under a lock; run this
    first with a role that may create tables when the daemons' role may only use them. A
    schema newer than this acceld is refused and left as it is.
    """
    settings = state_settings(config_file, state_dir)
    store = open_state(settings, SystemClock())
    database = store.database
    store.close()
    now = database.schema_version
    was = database.migrated_from
    change = "already current" if was == now else f"migrated from version {was}"
    click.echo(f"state {describe_state(settings)}: schema version {now}, {change}")
