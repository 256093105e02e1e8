"""`acceld convert REF`: convert one image now and print what was pushed."""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

import click

from converters.estargz import EstargzOptions, check_min_chunk_size
from converters.nydus import NydusOptions
from harbor_api.credentials import Credentials, resolve_credentials
from harbor_api.errors import InvalidReference
from harbor_api.oci import Platform
from harbor_api.reference import Reference
from harbor_api.registry import RegistryClient
from harbor_api.transport import TlsOptions
from policies.model import (
    DEFAULT_TAG_SUFFIX,
    ESTARGZ,
    NYDUS,
    SUPPORTED_FORMATS,
    Format,
    LayerOptions,
)
from policies.quantities import parse_size
from reconciler.commands.config_option import config_option
from reconciler.commands.output_option import output_option
from reconciler.commands.wording import human_size
from reconciler.config import load_config
from reconciler.conversion.image_conversion import (
    ConversionOptions,
    ConversionResult,
    LayerProgress,
    convert_image,
)
from reconciler.state.clock import SystemClock
from reconciler.state.private_dirs import private_directory
from reconciler.state.sqlite_database import state_db_path
from reconciler.state.sqlite_state import open_sqlite_state
from reconciler.state.store import LayerCache


def _platforms(
    _: click.Context, __: click.Parameter, values: tuple[str, ...]
) -> tuple[Platform, ...]:
    try:
        return tuple(Platform.parse(value) for value in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _min_chunk_size(_: click.Context, __: click.Parameter, value: str | None) -> int:
    if value is None:
        return 0
    try:
        return check_min_chunk_size(parse_size(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _layer_options(format: Format, min_chunk_size: int) -> LayerOptions:
    if format == NYDUS:
        if min_chunk_size:
            raise click.UsageError("--min-chunk-size applies to estargz only")
        return NydusOptions()
    return EstargzOptions(min_chunk_size=min_chunk_size)


def _reference(_: click.Context, __: click.Parameter, value: str) -> Reference:
    try:
        return Reference.parse(value)
    except InvalidReference as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("convert")
@click.argument("ref", callback=_reference)
@click.option(
    "--format",
    "format_",
    type=click.Choice([f.value for f in SUPPORTED_FORMATS]),
    default=ESTARGZ.value,
    show_default=True,
    help="Accelerated format to write.",
)
@click.option("--tag-suffix", help="Suffix appended to the original tag (default per format).")
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    callback=_platforms,
    metavar="OS/ARCH[/VARIANT]",
    help="Platform of an index to convert; repeat for several (default: all).",
)
@click.option(
    "--min-chunk-size",
    callback=_min_chunk_size,
    metavar="SIZE",
    help="Let small files share gzip members of at least SIZE (e.g. 256KiB): smaller layers, "
    "lazy-pullable by stargz-snapshotter v0.13.0 or later only (default: one member per file).",
)
@click.option("--plain-http", is_flag=True, help="Talk HTTP, not HTTPS, to the registry.")
@click.option("--insecure", is_flag=True, help="Do not verify the registry's TLS certificate.")
@click.option(
    "--ca-bundle",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM file of the CA certificates that sign the registry's certificate.",
)
@config_option
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where layers are spooled while converting (default: a temporary directory).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="State directory whose layer cache to use and fill (default: no cache kept).",
)
@output_option(default="text")
def convert_command(
    ref: Reference,
    format_: str,
    tag_suffix: str | None,
    platforms: tuple[Platform, ...],
    min_chunk_size: int,
    plain_http: bool,
    insecure: bool,
    ca_bundle: Path | None,
    config_file: Path | None,
    work_dir: Path | None,
    state_dir: Path | None,
    output: str,
) -> None:
    """Convert the image REF (HOST/REPOSITORY:TAG or @DIGEST) and push it as its referrer.

    With --config, the credentials and TLS settings of the config's source are used (REF must
    be on that registry). Otherwise credentials come from ACCELD_REGISTRY_USERNAME with
    ACCELD_REGISTRY_PASSWORD(_FILE), else from the Docker config.json.
    """
    options = ConversionOptions(
        tag_suffix=DEFAULT_TAG_SUFFIX[Format(format_)] if tag_suffix is None else tag_suffix,
        platforms=platforms,
        layer=_layer_options(Format(format_), min_chunk_size),
    )
    credentials, tls = _registry_access(ref, config_file)
    tls = TlsOptions(
        plain_http=plain_http or tls.plain_http,
        insecure=insecure or tls.insecure,
        ca_bundle=str(ca_bundle) if ca_bundle is not None else tls.ca_bundle,
    )
    registry = RegistryClient(ref.registry, credentials=credentials, tls=tls)
    progress = TerminalProgress(sys.stderr) if sys.stderr.isatty() else None
    with _layer_cache(state_dir) as layer_cache, _work_dir(work_dir) as work:
        try:
            result = convert_image(
                registry,
                ref.repository,
                ref.reference,
                format_,
                options,
                work_dir=work,
                layer_cache=layer_cache,
                progress=progress,
                source_tags=(ref.tag,) if ref.tag else None,
            )
        finally:
            if progress is not None:
                progress.clear()
    if output == "json":
        click.echo(json.dumps(result_json(ref, result), indent=2))
    else:
        click.echo(result_text(ref, result))


def _registry_access(
    ref: Reference, config_file: Path | None
) -> tuple[Credentials | None, TlsOptions]:
    """The credentials and TLS options for REF's registry: the config's source's, else the
    environment's or the Docker config's with default TLS."""
    if config_file is None:
        return resolve_credentials(ref.registry), TlsOptions()
    source = load_config(config_file).source
    if source.registry_host != ref.registry:
        raise click.UsageError(
            f"{ref.registry} is not the registry of the config's source "
            f"({source.registry_host}); drop --config to use other credentials"
        )
    return source.credentials, source.tls


@contextmanager
def _layer_cache(state_dir: Path | None) -> Iterator[LayerCache]:
    with ExitStack() as stack:
        if state_dir is None:
            state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="acceld-")))
        store = open_sqlite_state(state_db_path(state_dir, must_exist=False), SystemClock())
        stack.callback(store.close)
        yield store.layers


@contextmanager
def _work_dir(work_dir: Path | None) -> Iterator[Path]:
    if work_dir is not None:
        yield private_directory(work_dir, "--work-dir")
        return
    with tempfile.TemporaryDirectory(prefix="acceld-convert-") as scratch:
        yield Path(scratch)


class TerminalProgress:
    """One status line on a terminal, rewritten in place."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.width = 0

    def __call__(self, event: LayerProgress) -> None:
        where = f"{event.platform} " if event.platform else ""
        line = (
            f"{where}layer {event.index + 1}/{event.count} {event.source_digest[:19]} "
            f"({human_size(event.source_size)}): {event.stage}"
        )
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width = len(line)

    def clear(self) -> None:
        if self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()


def result_json(ref: Reference, result: ConversionResult) -> dict[str, Any]:
    return {
        "registry": ref.registry,
        "repository": result.repository,
        "format": result.format,
        "original": {"digest": result.original.digest, "media_type": result.original.media_type},
        "converted": {
            "digest": result.converted.digest,
            "media_type": result.converted.media_type,
            "size": result.converted.size,
        },
        "tags": list(result.tags),
        "pushed": result.pushed,
        "seconds": round(result.seconds, 3),
        "bytes_downloaded": result.bytes_downloaded,
        "bytes_uploaded": result.bytes_uploaded,
        "manifests": [
            {
                "platform": str(m.platform) if m.platform else None,
                "original_digest": m.original.digest,
                "digest": m.digest,
                "size": m.size,
                "config_digest": m.config_digest,
                "pushed": m.pushed,
                "layers": [
                    {
                        "source_digest": layer.source.digest,
                        "source_size": layer.source.size,
                        "digest": layer.converted.digest,
                        "size": layer.converted.size,
                        "diff_id": layer.diff_id,
                        "cached": layer.cached,
                        "seconds": round(layer.seconds, 3),
                    }
                    for layer in m.layers
                ],
            }
            for m in result.manifests
        ],
    }


def result_text(ref: Reference, result: ConversionResult) -> str:
    name = f"{ref.registry}/{result.repository}"
    lines = [
        f"{name}@{result.original.digest}",
        f"  -> {result.format} {result.converted.digest}"
        + "".join(f"\n  -> tag {name}:{tag}" for tag in result.tags),
    ]
    for manifest in result.manifests:
        if manifest.platform is not None:
            lines.append(f"  {manifest.platform}: {manifest.digest}")
        for layer in manifest.layers:
            how = "cached" if layer.cached else f"{layer.seconds:.2f}s"
            lines.append(
                f"    {layer.source.digest[:19]} {human_size(layer.source.size):>9} -> "
                f"{layer.converted.digest[:19]} {human_size(layer.converted.size):>9}  {how}"
            )
    lines.append(
        f"{'pushed' if result.pushed else 'already present, nothing pushed'}; "
        f"downloaded {human_size(result.bytes_downloaded)}, "
        f"uploaded {human_size(result.bytes_uploaded)} "
        f"in {result.seconds:.2f}s"
    )
    return "\n".join(lines)
