"""Images converted to nydus against the real registry, proven by the kernel's EROFS.

Each test converts an original pushed to the real registry, pulls back what acceld pushed,
and checks it as nydus-snapshotter would use it: the manifest and config rules, every blob and
the merged bootstrap through the independent RAFS validator, then the kernel mount, whose
tree must equal umoci's flattening of the original.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from converters.nydus import NydusOptions
from harbor_api.registry import RegistryClient
from harbor_api.transport import TlsOptions
from reconciler.cli import cli
from reconciler.conversion.image_conversion import ConversionResult, convert_image
from reconciler.conversion.layer_conversion import ConversionOptions
from reconciler.state.clock import SystemClock
from reconciler.state.sqlite_state import open_sqlite_state
from reconciler.state.store import LayerCache
from tests.support.converted_images import fallback_referrers, pull_manifest
from tests.support.erofs_mount import mount_unavailable
from tests.support.images import Entry, push_image, push_index, sample_layers
from tests.support.nydus_images import assert_mounts_as_original
from tests.support.registry_server import RunningRegistry

pytestmark = pytest.mark.skipif(mount_unavailable() is not None, reason=str(mount_unavailable()))

NYDUS = ConversionOptions(tag_suffix="-nydus", layer=NydusOptions(chunk_size=64 << 10))


@pytest.fixture
def client(registry: RunningRegistry) -> Iterator[RegistryClient]:
    with RegistryClient(registry.host, tls=TlsOptions(plain_http=True)) as opened:
        yield opened


@pytest.fixture
def layer_cache(tmp_path: Path) -> Iterator[LayerCache]:
    opened = open_sqlite_state(tmp_path / "state.db", SystemClock())
    yield opened.layers
    opened.close()


def _convert(
    client: RegistryClient, cache: LayerCache, tmp: Path, repository: str, reference: str
) -> ConversionResult:
    return convert_image(
        client, repository, reference, "nydus", NYDUS, work_dir=tmp / "work", layer_cache=cache
    )


def test_image_with_whiteouts_hardlinks_xattrs_and_setuid_mounts_as_its_original(
    registry: RunningRegistry, client: RegistryClient, layer_cache: LayerCache, tmp_path: Path
) -> None:
    repo = "nydus/app"
    pushed = push_image(registry.url, repo, "v1")

    result = _convert(client, layer_cache, tmp_path, repo, "v1")

    assert result.tags == ("v1-nydus",)
    assert pull_manifest(registry.url, repo, "v1-nydus").digest == result.converted_digest
    assert fallback_referrers(registry.url, repo, pushed.digest) == [result.converted_digest]
    assert_mounts_as_original(registry.url, repo, "v1-nydus", "v1", tmp_path / "check")


def test_zstd_original_converts_like_gzip(
    registry: RunningRegistry, client: RegistryClient, layer_cache: LayerCache, tmp_path: Path
) -> None:
    repo = "nydus/zstd"
    push_image(registry.url, repo, "v1", compression="zstd")

    _convert(client, layer_cache, tmp_path, repo, "v1")

    assert_mounts_as_original(registry.url, repo, "v1-nydus", "v1", tmp_path / "check")


def test_layers_from_the_cache_merge_like_fresh_ones(
    registry: RunningRegistry, client: RegistryClient, layer_cache: LayerCache, tmp_path: Path
) -> None:
    repo = "nydus/cached"
    extra = [Entry("srv", "dir", mode=0o755), Entry("srv/data", data=b"two\n" * 3000)]
    push_image(registry.url, repo, "v1")
    push_image(registry.url, repo, "v2", [*sample_layers(), extra])

    first = _convert(client, layer_cache, tmp_path, repo, "v1")
    second = _convert(client, layer_cache, tmp_path, repo, "v2")

    [first_manifest] = first.manifests
    [second_manifest] = second.manifests
    assert [layer.cached for layer in second_manifest.layers] == [True, True, False]
    assert [layer.converted for layer in first_manifest.layers] == [
        layer.converted for layer in second_manifest.layers[:2]
    ]
    assert_mounts_as_original(registry.url, repo, "v2-nydus", "v2", tmp_path / "check")


def test_multi_arch_index_gets_one_nydus_image_per_platform(
    registry: RunningRegistry, client: RegistryClient, layer_cache: LayerCache, tmp_path: Path
) -> None:
    repo = "nydus/multi"
    index, children = push_index(registry.url, repo, "v1", ["linux/amd64", "linux/arm64/v8"])

    result = _convert(client, layer_cache, tmp_path, repo, "v1")

    converted_index = pull_manifest(registry.url, repo, "v1-nydus").json
    assert converted_index["subject"]["digest"] == index.digest
    assert len(result.manifests) == 2
    for manifest, child in zip(result.manifests, children, strict=True):
        assert_mounts_as_original(
            registry.url, repo, manifest.digest, child.digest, tmp_path / child.digest[7:19]
        )


def test_acceld_convert_format_nydus_pushes_a_mountable_image_and_reuses_it(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    repo = "nydus/cli"
    push_image(registry.url, repo, "v1")
    args = [
        "convert",
        f"{registry.host}/{repo}:v1",
        "--format",
        "nydus",
        "--plain-http",
        "--output",
        "json",
        "--state-dir",
        str(tmp_path / "state"),
    ]

    first = CliRunner().invoke(cli, args, catch_exceptions=False)
    second = CliRunner().invoke(cli, args, catch_exceptions=False)

    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["tags"] == ["v1-nydus"]
    assert json.loads(second.output)["pushed"] is False
    assert_mounts_as_original(registry.url, repo, "v1-nydus", "v1", tmp_path / "check")
