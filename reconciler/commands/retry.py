"""`acceld retry KEY | --all`: put quarantined or backing-off keys back in the queue now."""

from __future__ import annotations

from pathlib import Path

import click

from harbor_api.errors import AcceldError
from reconciler.commands.state_location import existing_state_store, state_location_options
from reconciler.state.keys import InvalidKey, Key


class NothingToRetry(AcceldError):
    """The key named is neither quarantined nor backing off."""


def _key(_: click.Context, __: click.Parameter, value: str | None) -> Key | None:
    try:
        return None if value is None else Key.parse(value)
    except InvalidKey as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("retry")
@click.argument("key", required=False, callback=_key)
@click.option("--all", "retry_all", is_flag=True, help="Every quarantined or backing-off key.")
@state_location_options
def retry_command(
    key: Key | None, retry_all: bool, config_file: Path | None, state_dir: Path | None
) -> None:
    """Make KEY (REPOSITORY@DIGEST#FORMAT, as `acceld status` shows it) pending now."""
    if (key is None) == (not retry_all):
        raise click.UsageError("give either one KEY or --all")
    store = existing_state_store(config_file, state_dir)
    try:
        if key is None:
            moved = store.queue.retry_all()
            click.echo(f"{moved} key{'' if moved == 1 else 's'} back in the queue")
            return
        if not store.queue.retry(key):
            raise NothingToRetry(
                f"{key} is neither quarantined nor backing off (see acceld status)"
            )
        click.echo(f"{key} back in the queue")
    finally:
        store.close()
