"""Which state a maintenance command (`status`, `retry`, `migrate`) works on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from reconciler.commands.config_option import config_option
from reconciler.config import load_state_settings
from reconciler.state.clock import SystemClock
from reconciler.state.store import StateStore
from reconciler.state_config import SqliteStateSettings, StateSettings, open_state

F = TypeVar("F", bound=Callable[..., object])


def state_location_options(command: F) -> F:
    """`--config` and `--state-dir`: the state directory given, else the config's state."""
    command = click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="A SQLite state directory (default: the state of the config).",
    )(command)
    return config_option(command)


def state_settings(config_file: Path | None, state_dir: Path | None) -> StateSettings:
    """`--state-dir` as SQLite, else the config's `state:` (reading no secret but its DSN)."""
    if state_dir is not None:
        return SqliteStateSettings(state_dir)
    return load_state_settings(config_file)


def existing_state_store(config_file: Path | None, state_dir: Path | None) -> StateStore:
    """The store of an acceld that has run; an error, and nothing created, when there is none."""
    return open_state(state_settings(config_file, state_dir), SystemClock(), must_exist=True)
