"""The `acceld` command line. Each subcommand lives in its own `reconciler/commands/` module."""

from __future__ import annotations

import logging
import sys

import click

from harbor_api.errors import AcceldError
from harbor_api.version import ACCELD_VERSION
from reconciler.config import ConfigError
from reconciler.exit_codes import FAILED, INTERRUPTED, USAGE

log = logging.getLogger(__name__)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(ACCELD_VERSION, prog_name="acceld")
def cli() -> None:
    """acceld keeps every image in Harbor paired with its accelerated (eStargz) copies."""


def main() -> None:
    """Console entry point: an expected failure is one line on stderr and an exit status
    from `reconciler.exit_codes`; so is an unexpected one, its traceback logged at debug level
    only."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("acceld: aborted", err=True)
        sys.exit(INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        click.echo(f"acceld: error: {exc}", err=True)
        sys.exit(USAGE)
    except AcceldError as exc:
        click.echo(f"acceld: error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"acceld: error: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:
        log.debug("unexpected error", exc_info=True)
        click.echo(
            f"acceld: error: {type(exc).__name__}: {exc} (unexpected; the traceback is logged "
            "at debug level)",
            err=True,
        )
        sys.exit(FAILED)


from reconciler.commands.convert import convert_command  # noqa: E402

cli.add_command(convert_command)
from reconciler.commands.status import status_command  # noqa: E402

cli.add_command(status_command)
from reconciler.commands.retry import retry_command  # noqa: E402

cli.add_command(retry_command)
from reconciler.commands.harbor import harbor_group  # noqa: E402

cli.add_command(harbor_group)
from reconciler.commands.plan import plan_command  # noqa: E402

cli.add_command(plan_command)
from reconciler.commands.backfill import backfill_command  # noqa: E402

cli.add_command(backfill_command)
from reconciler.commands.check import check_command  # noqa: E402

cli.add_command(check_command)
from reconciler.commands.serve import serve_command  # noqa: E402

cli.add_command(serve_command)
from reconciler.commands.inspect import inspect_command  # noqa: E402

cli.add_command(inspect_command)
from reconciler.commands.migrate import migrate_command  # noqa: E402
from reconciler.commands.prune import prune_command  # noqa: E402

cli.add_command(prune_command)
cli.add_command(migrate_command)
