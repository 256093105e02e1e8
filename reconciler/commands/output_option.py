"""`--output text|json`, the same two values on every command that prints a result."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])

OUTPUT_FORMATS = ("text", "json")


def output_option(*, default: str | None = None) -> Callable[[F], F]:
    """`--output`; without a `default`, text on a terminal and JSON otherwise."""
    told = (
        f"default: {default}"
        if default is not None
        else "default: text on a terminal, JSON otherwise"
    )
    return click.option(
        "--output",
        type=click.Choice(OUTPUT_FORMATS),
        default=default,
        help=f"Output format ({told}).",
    )


def chosen_output(value: str | None) -> str:
    """The format asked for, else text on a terminal and JSON when piped."""
    return value or ("text" if sys.stdout.isatty() else "json")
