"""`acceld check`: validate the config and connect to the source, changing nothing.

Beyond parsing, it checks what otherwise shows only once the daemon runs: the state and work
directories are writable by this user, a `server:` section has a webhook secret (without one
every webhook is answered 401), and each enabled policy matches at least one repository. The
first request to the source is not retried, so a name that does not resolve or a refused
connection fails at once instead of after a round of retries.
"""

from __future__ import annotations

import getpass
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import click

from harbor_api.errors import AcceldError
from harbor_api.transport import NO_RETRY
from policies.glob import any_match
from policies.match import policy_matches_project
from policies.model import Policy
from reconciler.commands.config_option import config_option
from reconciler.commands.wording import plural
from reconciler.config import Config, HarborSettings, load_config
from reconciler.controller.sources import Source
from reconciler.service.clients import build_source, harbor_client, registry_client
from reconciler.state.clock import SystemClock
from reconciler.state.sqlite_database import STATE_DB
from reconciler.state_config import SqliteStateSettings, describe_state, open_state

# Harbor serves the referrers API (and answers OCI-Subject) from v2.8 on.
_MIN_HARBOR = (2, 8)
_VERSION = re.compile(r"v?(\d+)\.(\d+)")


class CheckFailed(AcceldError):
    """`acceld check` found a problem the daemon would meet; the lines above say which."""


def directory_problem(path: Path) -> str | None:
    """Why this user could not create files in `path` (made first if missing), or None.

    A missing directory is judged by its nearest existing parent, and nothing is created."""
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    try:
        # A real file, not os.access: root passes os.access on a read-only mount too.
        with tempfile.TemporaryFile(dir=existing, prefix=".acceld-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        user = getpass.getuser()
        if existing == path:
            return f"not writable by user {user} ({reason})"
        return f"does not exist and {existing} is not writable by user {user} ({reason})"
    return None


def repositories_matched(policies: Sequence[Policy], repositories: Iterable[str]) -> dict[str, int]:
    """Enabled policy → how many of `repositories` it covers."""
    counts = {p.name: 0 for p in policies if p.enabled}
    for repository in repositories:
        project = repository.split("/", 1)[0]
        for policy in policies:
            if (
                policy.enabled
                and policy_matches_project(policy, project)
                and any_match(policy.repositories, repository)
            ):
                counts[policy.name] += 1
    return counts


def _covered_repositories(source: Source, policies: Sequence[Policy]) -> Iterable[str]:
    enabled = [p for p in policies if p.enabled]
    for project in source.projects():
        if any(policy_matches_project(p, project) for p in enabled):
            yield from source.repositories(project)


def _check_local(config: Config) -> list[str]:
    problems = []
    for name, path in (("state_dir", config.state_dir), ("work_dir", config.work_dir)):
        problem = directory_problem(path)
        if problem is None:
            click.echo(f"{name} {path}: writable")
        else:
            problems.append(f"{name} {path}: {problem}")
    if config.server.given and config.server.webhook_secret is None:
        problems.append(
            "server: no webhook_secret (webhook_secret_file, _env or _credential): acceld serve "
            "would answer every webhook 401"
        )
    return problems


def _check_source(config: Config) -> None:
    source = config.source
    if isinstance(source, HarborSettings):
        info = harbor_client(source, retry=NO_RETRY).systeminfo()
        click.echo(f"harbor {source.url}: {info.harbor_version}, credentials accepted")
        found = _VERSION.match(info.harbor_version)
        if found and (int(found[1]), int(found[2])) < _MIN_HARBOR:
            raise CheckFailed(
                f"Harbor {info.harbor_version} has no referrers API; acceld needs v2.8 or newer"
            )
        projects = sum(1 for _ in harbor_client(source).projects())
        click.echo(
            f"harbor: {plural(projects, 'project')} visible to {source.credentials.username}"
        )
    registry = registry_client(source, retry=NO_RETRY)
    registry.ping()
    click.echo(f"registry {registry.host}: /v2/ answers, credentials accepted")


def _check_policies(config: Config) -> None:
    matched = repositories_matched(
        config.policies, _covered_repositories(build_source(config.source, None), config.policies)
    )
    for name, count in matched.items():
        if count:
            click.echo(f"policy {name}: matches {plural(count, 'repository')}")
        else:
            click.echo(
                f"warning: policy {name} matches no repository: check its projects and "
                "repositories globs (or what the robot may see)",
                err=True,
            )


def _check_state(config: Config) -> None:
    """The state database answers, with a current schema and the privileges acceld needs.

    An SQLite state that does not exist yet is left uncreated: `check` changes nothing.
    """
    settings = config.state
    where = describe_state(settings)
    if isinstance(settings, SqliteStateSettings) and not (settings.state_dir / STATE_DB).exists():
        click.echo(f"state {where}: not created yet (the first serve or backfill creates it)")
        return
    open_state(settings, SystemClock(), migrate=False).close()
    click.echo(f"state {where}: schema current, privileges ok")


@click.command("check")
@config_option
def check_command(config_file: Path | None) -> None:
    """Validate the config, the directories and the webhook secret, then check the source
    answers, accepts the credentials, and has repositories each policy matches."""
    config = load_config(config_file)
    enabled = [p.name for p in config.policies if p.enabled]
    click.echo(
        f"config {config.path}: ok ({plural(len(enabled), 'enabled policy')}: {', '.join(enabled)})"
    )
    problems = _check_local(config)
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    _check_state(config)
    _check_source(config)
    _check_policies(config)
    if problems:
        raise CheckFailed(f"{plural(len(problems), 'problem')} found (see above)")
