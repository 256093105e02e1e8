"""What every command shares: the same `--output` values, and one exit status for a broken
config file."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from reconciler.cli import cli
from reconciler.exit_codes import USAGE
from tests.support.acceld_process import acceld


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += _commands(command, f"{prefix}{name} ")
        else:
            found.append((f"{prefix}{name}", command))
    return found


def test_every_output_option_takes_text_or_json() -> None:
    with_output = {}
    for name, command in _commands(cli):
        for param in command.params:
            if param.name == "output":
                assert isinstance(param.type, click.Choice)
                with_output[name] = tuple(param.type.choices)
    assert set(with_output) >= {"backfill", "convert", "inspect", "plan", "status"}
    assert set(with_output.values()) == {("text", "json")}


@pytest.mark.parametrize(
    "args",
    [
        ["check"],
        ["plan"],
        ["backfill"],
        ["serve"],
        ["harbor", "setup"],
        ["convert", "127.0.0.1:5000/a/b:v1"],
    ],
)
def test_a_broken_config_exits_2_on_every_command(tmp_path: Path, args: list[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "source: {kind: registry, url: 'x:1'}\npolicies: [{name: a, formats: [zip]}]\n"
    )
    done = acceld(*args, "--config", str(config), timeout=60)
    assert done.returncode == USAGE, done.stderr
    assert done.stderr.startswith("acceld: error: ")
    assert 'unknown format "zip"' in done.stderr
