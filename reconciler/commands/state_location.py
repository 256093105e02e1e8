"""Which state database a maintenance command (`status`, `retry`) works on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from reconciler.commands.config_option import config_file_option
from reconciler.config import load_state_dir
from reconciler.state.clock import SystemClock
from reconciler.state.sqlite_database import state_db_path
from reconciler.state.sqlite_state import open_sqlite_state
from reconciler.state.store import StateStore

F = TypeVar("F", bound=Callable[..., object])


def state_location_options(command: F) -> F:
    """`--config` and `--state-dir`: the state directory given, else the config's."""
    command = click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="The daemon's state directory (default: state_dir of the config).",
    )(command)
    return config_file_option(command)


def existing_state_store(config_file: Path | None, state_dir: Path | None) -> StateStore:
    """The store of an acceld that has run; an error, and nothing created, when there is none."""
    directory = state_dir if state_dir is not None else load_state_dir(config_file)
    return open_sqlite_state(state_db_path(directory, must_exist=True), SystemClock())
