"""`acceld inspect REF`: a manifest or index, its image config and its referrers."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from harbor_api.credentials import resolve_credentials
from harbor_api.errors import AcceldError, InvalidManifest
from harbor_api.oci import IMAGE_CONFIG_TYPES, Descriptor, Index, Manifest
from harbor_api.reference import Reference
from harbor_api.registry import FetchedManifest, RegistryClient
from harbor_api.transport import RetryPolicy, TlsOptions
from reconciler.commands.output_option import chosen_output, output_option
from reconciler.observability.logs import configure_logging

MAX_CONFIG_BYTES = 4 << 20
# Someone is waiting at a terminal: a few quick retries, then the error.
INTERACTIVE_RETRY = RetryPolicy(attempts=3, max_seconds=15.0, max_wait=5.0)


@dataclass(frozen=True)
class Inspection:
    """What `inspect` found: the manifest as stored, its config (images only), its referrers."""

    reference: Reference
    manifest: FetchedManifest
    config: Mapping[str, Any] | None
    referrers: tuple[Descriptor, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": str(self.reference),
            "digest": self.manifest.digest,
            "mediaType": self.manifest.media_type,
            "size": len(self.manifest.raw),
            "manifest": json.loads(self.manifest.raw),
            "config": self.config,
            "referrers": [d.to_json() for d in self.referrers],
        }


def inspect_reference(registry: RegistryClient, reference: Reference) -> Inspection:
    fetched = registry.get_manifest(reference.repository, reference.reference)
    config = None
    content = fetched.content
    if isinstance(content, Manifest) and content.config.media_type in IMAGE_CONFIG_TYPES:
        raw = registry.read_blob(reference.repository, content.config.digest, MAX_CONFIG_BYTES)
        try:
            config = json.loads(raw)
        except ValueError:
            raise InvalidManifest(f"config {content.config.digest} is not JSON") from None
    referrers = registry.referrers(reference.repository, fetched.digest)
    return Inspection(reference, fetched, config, tuple(referrers))


def _size(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{value} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _rows(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return lines


def inspection_table(found: Inspection) -> str:
    manifest = found.manifest
    lines = [
        f"Reference:   {found.reference}",
        f"Digest:      {manifest.digest}",
        f"Media type:  {manifest.media_type}",
        f"Size:        {_size(len(manifest.raw))}",
    ]
    content = manifest.content
    if found.config is not None:
        os_name, arch = found.config.get("os", "?"), found.config.get("architecture", "?")
        variant = found.config.get("variant")
        lines.append(f"Platform:    {os_name}/{arch}" + (f"/{variant}" if variant else ""))
        if found.config.get("created"):
            lines.append(f"Created:     {found.config['created']}")
    if content.subject is not None:
        lines.append(f"Subject:     {content.subject.digest}")
    for key, value in sorted(content.annotations.items()):
        lines.append(f"Annotation:  {key}={value}")
    if isinstance(content, Index):
        lines.append(f"\nManifests ({len(content.manifests)}):")
        if content.manifests:
            lines += _rows(
                ("PLATFORM", "DIGEST", "SIZE", "MEDIA TYPE"),
                [
                    (str(m.platform or "-"), m.digest, _size(m.size), m.media_type)
                    for m in content.manifests
                ],
            )
    else:
        lines.append(f"Config:      {content.config.digest} ({content.config.media_type})")
        lines.append(
            f"\nLayers ({len(content.layers)}, {_size(sum(x.size for x in content.layers))}):"
        )
        if content.layers:
            lines += _rows(
                ("DIGEST", "SIZE", "MEDIA TYPE"),
                [(x.digest, _size(x.size), x.media_type) for x in content.layers],
            )
    lines.append(f"\nReferrers ({len(found.referrers)}):")
    if found.referrers:
        lines += _rows(
            ("DIGEST", "ARTIFACT TYPE", "ANNOTATIONS"),
            [
                (
                    r.digest,
                    r.artifact_type or "-",
                    ", ".join(f"{k}={v}" for k, v in sorted(r.annotations.items())) or "-",
                )
                for r in found.referrers
            ],
        )
    return "\n".join(lines)


@click.command("inspect")
@click.argument("ref")
@click.option("--plain-http", is_flag=True, help="Talk HTTP, not HTTPS, to the registry.")
@click.option("--insecure", is_flag=True, help="Do not verify the registry's TLS certificate.")
@click.option("--ca-bundle", metavar="FILE", help="CA certificates to verify the registry with.")
@output_option()
def inspect_command(
    ref: str, plain_http: bool, insecure: bool, ca_bundle: str | None, output: str | None
) -> None:
    """Show the manifest or index REF (HOST/REPOSITORY[:TAG][@DIGEST]), its config and referrers.

    Registry credentials come from ACCELD_REGISTRY_USERNAME with ACCELD_REGISTRY_PASSWORD(_FILE),
    else from the Docker config.json.
    """
    configure_logging("text", level=logging.ERROR, stream=sys.stderr)
    reference = Reference.parse(ref)
    if ca_bundle is not None and not Path(ca_bundle).is_file():
        raise AcceldError(f"--ca-bundle {ca_bundle}: no such file")
    tls = TlsOptions(plain_http=plain_http, insecure=insecure, ca_bundle=ca_bundle)
    with RegistryClient(
        reference.registry,
        credentials=resolve_credentials(reference.registry),
        tls=tls,
        retry=INTERACTIVE_RETRY,
    ) as registry:
        found = inspect_reference(registry, reference)
    if chosen_output(output) == "json":
        click.echo(json.dumps(found.to_json(), indent=2))
    else:
        click.echo(inspection_table(found))
