"""The options every command that reads the config file shares: `--config`, and
`--credentials-dir` for the `*_credential` secrets it names."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from reconciler.secrets import ACCELD_CREDENTIALS_DIR

F = TypeVar("F", bound=Callable[..., object])

config_file_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Config file (default: $ACCELD_CONFIG, else /etc/acceld/config.yaml).",
)


def _credentials_dir(_: click.Context, __: click.Parameter, value: Path | None) -> None:
    # The config is loaded (and reloaded, by serve) from the environment; the flag joins it.
    if value is not None:
        os.environ[ACCELD_CREDENTIALS_DIR] = str(value)


credentials_dir_option = click.option(
    "--credentials-dir",
    type=click.Path(file_okay=False, path_type=Path),
    expose_value=False,
    is_eager=True,
    callback=_credentials_dir,
    help="Read *_credential secrets from DIR/NAME or DIR/acceld.NAME (default: "
    "$CREDENTIALS_DIRECTORY under systemd, else /etc/credstore).",
)


def config_option(command: F) -> F:
    """`--config` and `--credentials-dir`."""
    return config_file_option(credentials_dir_option(command))
