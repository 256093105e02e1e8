"""`acceld harbor setup`: register acceld's webhook on the Harbor projects it serves.

Harbor has no system-wide webhook, so the policy named `acceld` is kept on each project a
policy covers (or each `--project`). Running it again changes nothing when all is in place;
a policy that drifted (address, secret, format, disabled) is put back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import click

from harbor_api.errors import AcceldError
from harbor_api.harbor import ROBOT_PERMISSIONS, HarborClient
from harbor_api.harbor_models import WebhookPolicy, WebhookTarget
from policies.match import policy_matches_project
from policies.model import Policy
from reconciler.commands.config_option import config_option
from reconciler.config import Config, HarborSettings, load_config
from reconciler.service.clients import harbor_client

WEBHOOK_NAME = "acceld"
WEBHOOK_PATH = "/webhooks/harbor"
WEBHOOK_EVENTS = ("PUSH_ARTIFACT",)
PAYLOAD_FORMATS = ("Default", "CloudEvents")
SETUP_PERMISSIONS = (
    "notification-policy:list",
    "notification-policy:create",
    "notification-policy:update",
)


class SetupError(AcceldError):
    """`harbor setup` cannot run with what it was given; nothing was changed."""


@dataclass(frozen=True)
class Change:
    """What setup does on one project; `changed` names the fields that differ."""

    project: str
    action: Literal["create", "update", "unchanged"]
    policy: WebhookPolicy
    changed: tuple[str, ...] = ()


def wanted_policy(address: str, auth_header: str, payload_format: str) -> WebhookPolicy:
    return WebhookPolicy(
        name=WEBHOOK_NAME,
        description="acceld: convert pushed images to accelerated formats",
        enabled=True,
        event_types=WEBHOOK_EVENTS,
        targets=(
            WebhookTarget(address=address, auth_header=auth_header, payload_format=payload_format),
        ),
    )


def _differences(existing: WebhookPolicy, wanted: WebhookPolicy) -> tuple[str, ...]:
    changed = [
        name
        for name in ("enabled", "event_types", "description")
        if getattr(existing, name) != getattr(wanted, name)
    ]
    if len(existing.targets) != len(wanted.targets):
        changed.append("targets")
    else:
        for i, (old, new) in enumerate(zip(existing.targets, wanted.targets, strict=True)):
            for name in ("type", "address", "auth_header", "payload_format", "skip_cert_verify"):
                if getattr(old, name) != getattr(new, name):
                    changed.append(f"targets[{i}].{name}")
    return tuple(changed)


def plan_webhook_changes(
    existing: Mapping[str, Sequence[WebhookPolicy]], wanted: WebhookPolicy
) -> list[Change]:
    """Per project (sorted): create `wanted`, update the same-named policy, or leave it."""
    changes = []
    for project in sorted(existing):
        current = next((p for p in existing[project] if p.name == wanted.name), None)
        if current is None:
            changes.append(Change(project, "create", wanted))
            continue
        changed = _differences(current, wanted)
        updated = WebhookPolicy(
            wanted.name,
            wanted.enabled,
            wanted.event_types,
            wanted.targets,
            wanted.description,
            id=current.id,
        )
        changes.append(Change(project, "update" if changed else "unchanged", updated, changed))
    return changes


def covered_projects(policies: Iterable[Policy], visible: Iterable[str]) -> list[str]:
    """The visible projects at least one enabled policy covers."""
    enabled = [p for p in policies if p.enabled]
    return sorted(name for name in visible if any(policy_matches_project(p, name) for p in enabled))


def describe_change(change: Change, dry_run: bool) -> str:
    target = change.policy.targets[0]
    where = f"{target.address} ({target.payload_format})"
    if change.action == "create":
        verb = "would create" if dry_run else "created"
        return f"project {change.project}: {verb} webhook policy '{WEBHOOK_NAME}' -> {where}"
    if change.action == "update":
        verb = "would update" if dry_run else "updated"
        fields = ", ".join(change.changed)
        return f"project {change.project}: {verb} webhook policy '{WEBHOOK_NAME}' ({fields})"
    return f"project {change.project}: webhook policy '{WEBHOOK_NAME}' is up to date"


def _target_projects(config: Config, client: HarborClient, asked: Sequence[str]) -> list[str]:
    visible = [project.name for project in client.projects()]
    assert isinstance(config.source, HarborSettings)
    who = f"{config.source.credentials.username} on {config.source.url}"
    if not asked:
        projects = covered_projects(config.policies, visible)
        if not projects:
            raise SetupError(
                f"no Harbor project visible to {who} is covered by an enabled policy "
                f"in {config.path}; name projects with --project"
            )
        return projects
    unknown = [name for name in asked if name not in visible]
    if unknown:
        raise SetupError(
            f"project {unknown[0]} is not among the projects {who} can push to: it "
            f"does not exist, is a proxy-cache project, or the robot has no access to it"
        )
    return sorted(set(asked))


@click.group("harbor")
def harbor_group() -> None:
    """Commands that configure Harbor for acceld."""


@harbor_group.command("setup")
@config_option
@click.option(
    "--project",
    "projects",
    multiple=True,
    help="Only this project (repeatable); default: every project a policy covers.",
)
@click.option("--url", help="acceld's URL as Harbor reaches it (default: server.external_url).")
@click.option(
    "--payload-format",
    type=click.Choice(PAYLOAD_FORMATS),
    default="Default",
    show_default=True,
    help="Webhook payload format Harbor sends.",
)
@click.option("--dry-run", is_flag=True, help="Show the changes without making them.")
def setup_command(
    config_file: Path | None,
    projects: tuple[str, ...],
    url: str | None,
    payload_format: str,
    dry_run: bool,
) -> None:
    """Create or update the webhook policy `acceld` on each project, idempotently."""
    config = load_config(config_file)
    if not isinstance(config.source, HarborSettings):
        raise SetupError(f"{config.path}: source.kind is not harbor; there is no Harbor to set up")
    base_url = (url or config.server.external_url).rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise SetupError(
            f"acceld's URL is unknown or not http(s)://: set server.external_url in "
            f"{config.path} or pass --url"
        )
    secret = config.server.webhook_secret
    wanted = wanted_policy(
        base_url + WEBHOOK_PATH, secret.reveal() if secret else "", payload_format
    )
    with harbor_client(config.source) as client:
        client.systeminfo()
        targets = _target_projects(config, client, projects)
        existing = {project: list(client.webhook_policies(project)) for project in targets}
        changes = plan_webhook_changes(existing, wanted)
        for change in changes:
            if not dry_run and change.action == "create":
                client.create_webhook_policy(change.project, change.policy)
            elif not dry_run and change.action == "update":
                client.update_webhook_policy(change.project, change.policy)
            click.echo(describe_change(change, dry_run))
    if secret is None:
        click.echo("warning: no server.webhook_secret: Harbor's requests carry no Authorization")
    click.echo(
        f"the robot {config.source.credentials.username} needs on each of these projects: "
        + ", ".join(ROBOT_PERMISSIONS)
    )
    click.echo("and, to run this setup, " + ", ".join(SETUP_PERMISSIONS))
