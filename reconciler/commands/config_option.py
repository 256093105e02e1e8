"""The `--config` option every command that reads the config file shares."""

from __future__ import annotations

from pathlib import Path

import click

config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Config file (default: $ACCELD_CONFIG, else /etc/acceld/config.yaml).",
)
