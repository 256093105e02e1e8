"""End to end: originals pushed to the real registry, converted, pulled back and checked."""

from __future__ import annotations

import gzip
import json
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs

import pytest
import requests

from converters.estargz import EstargzOptions
from harbor_api.oci import Descriptor, Platform
from harbor_api.registry import RegistryClient
from harbor_api.transport import TlsOptions
from harbor_api.version import ACCELD_VERSION
from reconciler.conversion.errors import (
    InvalidTarget,
    NoMatchingPlatform,
    NotAnImage,
    NotAnOriginal,
    UnsupportedFormat,
    UnsupportedLayer,
)
from reconciler.conversion.image_conversion import (
    ConversionOptions,
    ConversionResult,
    LayerProgress,
    convert_image,
    target_tags,
)
from reconciler.conversion.layer_conversion import check_convertible_layer
from reconciler.state.clock import SystemClock
from reconciler.state.sqlite_state import open_sqlite_state
from reconciler.state.store import LayerCache
from tests.support.converted_images import (
    check_converted_manifest,
    fallback_referrers,
    pull_blob,
    pull_manifest,
    tags,
    write_count,
)
from tests.support.estargz_reader import EstargzBlob
from tests.support.images import (
    NET_RAW_CAPABILITY,
    Entry,
    push_artifact,
    push_blob,
    push_image,
    push_index,
    push_manifest,
    sample_layers,
)
from tests.support.registry_log import parse_access_log, writes_to_manifests
from tests.support.registry_server import RunningRegistry

OPTIONS = ConversionOptions(layer=EstargzOptions(compression_level=1))


@pytest.fixture
def client(registry: RunningRegistry) -> Iterator[RegistryClient]:
    with RegistryClient(registry.host, tls=TlsOptions(plain_http=True)) as opened:
        yield opened


@pytest.fixture
def layer_cache(tmp_path: Path) -> Iterator[LayerCache]:
    opened = open_sqlite_state(tmp_path / "state.db", SystemClock())
    yield opened.layers
    opened.close()


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    return tmp_path / "work"


def _check(
    registry: RunningRegistry, repository: str, original_ref: str, converted_digest: str
) -> list[EstargzBlob]:
    original = pull_manifest(registry.url, repository, original_ref)
    assert (
        fallback_referrers(registry.url, repository, original.digest).count(converted_digest) == 1
    )
    with tempfile.TemporaryDirectory() as scratch:
        return check_converted_manifest(
            registry.url, repository, converted_digest, original, ACCELD_VERSION, Path(scratch)
        )


class Convert(Protocol):
    def __call__(
        self,
        repository: str,
        reference: str,
        options: ConversionOptions = ...,
        *,
        source_tags: tuple[str, ...] | None = ...,
    ) -> ConversionResult: ...


@pytest.fixture
def convert(client: RegistryClient, layer_cache: LayerCache, work_dir: Path) -> Convert:
    """estargz conversion with the test's layer cache and work dir (level 1: fast)."""

    def run(
        repository: str,
        reference: str,
        options: ConversionOptions = OPTIONS,
        *,
        source_tags: tuple[str, ...] | None = None,
    ) -> ConversionResult:
        return convert_image(
            client,
            repository,
            reference,
            "estargz",
            options,
            work_dir=work_dir,
            layer_cache=layer_cache,
            source_tags=source_tags,
        )

    return run


def test_image_with_hardlinks_and_whiteouts_is_converted_tagged_and_linked(
    registry: RunningRegistry, work_dir: Path, convert: Convert
) -> None:
    repo = "conv/plain"
    pushed = push_image(registry.url, repo, "v1")

    result = convert(repo, "v1")

    assert result.original_digest == pushed.digest
    assert result.tags == ("v1-esgz",)
    assert pull_manifest(registry.url, repo, "v1-esgz").digest == result.converted_digest
    base, top = (blob.tree for blob in _check(registry, repo, "v1", result.converted_digest))
    assert base["bin/tool-hard"].type == tarfile.LNKTYPE
    assert base["bin/tool-hard"].linkname == "bin/tool"
    assert dict(base["usr/ping"].xattrs) == {"security.capability": NET_RAW_CAPABILITY.encode()}
    assert top["var/.wh.old"].type == tarfile.REGTYPE
    assert fallback_referrers(registry.url, repo, pushed.digest) == [result.converted_digest]
    assert [layer.cached for layer in result.manifests[0].layers] == [False, False]
    assert result.manifests[0].platform == Platform("linux", "amd64")
    assert list(work_dir.iterdir()) == []


def test_progress_reports_every_stage_of_every_layer(
    registry: RunningRegistry, client: RegistryClient, layer_cache: LayerCache, work_dir: Path
) -> None:
    repo = "conv/progress"
    pushed = push_image(registry.url, repo, "v1")
    events: list[LayerProgress] = []

    for _ in range(2):
        convert_image(
            client,
            repo,
            "v1",
            "estargz",
            OPTIONS,
            work_dir=work_dir,
            layer_cache=layer_cache,
            progress=events.append,
        )

    stages = ["downloading", "converting", "uploading", "done"]
    expected = [(i, stage) for i in (0, 1) for stage in stages] + [(0, "cached"), (1, "cached")]
    assert [(e.index, e.stage) for e in events] == expected
    assert {(e.source_digest, e.count, e.platform) for e in events} == {
        (digest, 2, "linux/amd64") for digest in pushed.layer_digests
    }


def test_config_keeps_history_and_drops_legacy_parent_ids(
    registry: RunningRegistry, convert: Convert
) -> None:
    repo = "conv/config"
    push_image(registry.url, repo, "v1")
    original_config = json.loads(
        pull_blob(
            registry.url,
            repo,
            pull_manifest(registry.url, repo, "v1").json["config"]["digest"],
        )
    )
    result = convert(repo, "v1")
    manifest = pull_manifest(registry.url, repo, result.converted_digest).json
    config = json.loads(pull_blob(registry.url, repo, manifest["config"]["digest"]))
    assert config["history"] == original_config["history"]
    assert config["config"]["Env"] == original_config["config"]["Env"]
    assert "Image" not in config["config"]
    assert "Image" not in config["container_config"]
    assert config["rootfs"]["diff_ids"] != original_config["rootfs"]["diff_ids"]


def test_converting_twice_pushes_nothing_new(registry: RunningRegistry, convert: Convert) -> None:
    repo = "conv/twice"
    pushed = push_image(registry.url, repo, "v1")
    first = convert(repo, "v1")
    writes = write_count(registry.log_text(), repo)

    second = convert(repo, "v1")

    assert second.converted_digest == first.converted_digest
    assert not second.pushed
    assert second.bytes_uploaded == 0
    assert second.bytes_downloaded == 0
    assert all(layer.cached for layer in second.manifests[0].layers)
    assert write_count(registry.log_text(), repo) == writes
    assert fallback_referrers(registry.url, repo, pushed.digest) == [first.converted_digest]


def test_same_image_converts_to_the_same_digests_without_the_cache(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, work_dir: Path
) -> None:
    repo = "conv/deterministic"
    push_image(registry.url, repo, "v1")
    digests = []
    for run in ("a", "b"):
        fresh = open_sqlite_state(tmp_path / f"state-{run}.db", SystemClock())
        result = convert_image(
            client, repo, "v1", "estargz", OPTIONS, work_dir=work_dir, layer_cache=fresh.layers
        )
        fresh.close()
        assert not any(layer.cached for layer in result.manifests[0].layers)
        digests.append(result.converted_digest)
    assert digests[0] == digests[1]
    assert not result.pushed


def test_second_image_sharing_base_layers_converts_only_its_own(
    registry: RunningRegistry, convert: Convert
) -> None:
    base, top = sample_layers()
    push_image(registry.url, "conv/shared-a", "v1", [base, top])
    other_top = [Entry("srv", "dir", mode=0o755), Entry("srv/b.txt", data=b"only in b\n")]
    push_image(registry.url, "conv/shared-b", "v1", [base, other_top])
    first = convert("conv/shared-a", "v1")

    second = convert("conv/shared-b", "v1")

    layers = second.manifests[0].layers
    assert [layer.cached for layer in layers] == [True, False]
    assert layers[0].converted == first.manifests[0].layers[0].converted
    assert layers[0].bytes_downloaded == 0
    assert layers[0].bytes_uploaded == 0
    assert second.bytes_downloaded == layers[1].source.size
    mounts = [
        parse_qs(r.query)
        for r in parse_access_log(registry.log_text())
        if r.method == "POST" and r.path == "/v2/conv/shared-b/blobs/uploads/" and r.query
    ]
    assert mounts == [{"mount": [layers[0].converted.digest], "from": ["conv/shared-a"]}]
    _check(registry, "conv/shared-b", "v1", second.converted_digest)


def test_cached_layer_deleted_from_the_registry_is_converted_again(
    registry: RunningRegistry, convert: Convert
) -> None:
    base, top = sample_layers()
    push_image(registry.url, "conv/gone-a", "v1", [base, top])
    push_image(registry.url, "conv/gone-b", "v1", [base])
    first = convert("conv/gone-a", "v1")
    converted_base = first.manifests[0].layers[0].converted.digest
    deleted = requests.delete(f"{registry.url}/v2/conv/gone-a/blobs/{converted_base}", timeout=10)
    assert deleted.status_code == 202

    second = convert("conv/gone-b", "v1")

    layer = second.manifests[0].layers[0]
    assert not layer.cached
    assert layer.converted.digest == converted_base
    assert layer.bytes_uploaded == layer.converted.size
    _check(registry, "conv/gone-b", "v1", second.converted_digest)


def test_multi_arch_index_gets_a_converted_index_and_per_platform_referrers(
    registry: RunningRegistry, convert: Convert
) -> None:
    repo = "conv/multi"
    index, children = push_index(registry.url, repo, "v2", ["linux/amd64", "linux/arm64/v8"])
    original_index = pull_manifest(registry.url, repo, "v2")

    result = convert(repo, "v2")

    converted = pull_manifest(registry.url, repo, "v2-esgz")
    assert converted.digest == result.converted_digest
    data = converted.json
    assert data["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert data["subject"] == original_index.descriptor
    assert (
        data["annotations"]["io.goharbor.artifact.v1alpha1.acceleration.source.digest"]
        == index.digest
    )
    assert [m["platform"] for m in data["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
    ]
    for entry, child in zip(data["manifests"], children, strict=True):
        _check(registry, repo, child.digest, entry["digest"])
        assert fallback_referrers(registry.url, repo, child.digest) == [entry["digest"]]
    assert fallback_referrers(registry.url, repo, index.digest) == [result.converted_digest]
    assert [str(m.platform) for m in result.manifests] == ["linux/amd64", "linux/arm64/v8"]


def test_platform_selection_converts_only_the_wanted_platforms(
    registry: RunningRegistry, convert: Convert
) -> None:
    repo = "conv/multi-select"
    push_index(registry.url, repo, "v1", ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"])
    options = ConversionOptions(
        layer=EstargzOptions(compression_level=1), platforms=(Platform.parse("linux/arm64"),)
    )

    result = convert(repo, "v1", options)

    data = pull_manifest(registry.url, repo, "v1-esgz").json
    assert [m["platform"]["architecture"] for m in data["manifests"]] == ["arm64"]
    assert len(result.manifests) == 1
    with pytest.raises(NoMatchingPlatform, match=r"platforms windows/amd64 .*linux/arm/v7"):
        convert(repo, "v1", ConversionOptions(platforms=(Platform.parse("windows/amd64"),)))


def test_docker_schema2_original_gives_oci_output(
    registry: RunningRegistry, convert: Convert
) -> None:
    repo = "conv/docker"
    pushed = push_image(registry.url, repo, "v1", docker=True)
    assert pushed.media_type == "application/vnd.docker.distribution.manifest.v2+json"

    result = convert(repo, "v1")

    _check(registry, repo, "v1", result.converted_digest)


def test_docker_manifest_list_gives_an_oci_index(
    registry: RunningRegistry, convert: Convert
) -> None:
    repo = "conv/docker-list"
    push_index(registry.url, repo, "v1", ["linux/amd64"], docker=True)
    original = pull_manifest(registry.url, repo, "v1")

    result = convert(repo, "v1")

    data = pull_manifest(registry.url, repo, result.converted_digest).json
    assert data["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert data["subject"] == original.descriptor
    assert data["manifests"][0]["mediaType"] == "application/vnd.oci.image.manifest.v1+json"


def test_zstd_original_gives_gzip_estargz_layers(
    registry: RunningRegistry, convert: Convert
) -> None:
    repo = "conv/zstd"
    push_image(registry.url, repo, "v1", compression="zstd")

    result = convert(repo, "v1")

    blobs = _check(registry, repo, "v1", result.converted_digest)
    assert "app/main.py" in blobs[1].tree


def test_uncompressed_original_gives_gzip_estargz_layers(
    registry: RunningRegistry, convert: Convert
) -> None:
    repo = "conv/plain-tar"
    push_image(registry.url, repo, "v1", compression="none")
    result = convert(repo, "v1")
    _check(registry, repo, "v1", result.converted_digest)


def test_digest_only_original_gets_no_tag(registry: RunningRegistry, convert: Convert) -> None:
    repo = "conv/untagged"
    pushed = push_image(registry.url, repo, "")

    result = convert(repo, pushed.digest)

    assert result.tags == ()
    assert result.tag is None
    assert [t for t in tags(registry.url, repo) if not t.startswith("sha256-")] == []
    assert fallback_referrers(registry.url, repo, pushed.digest) == [result.converted_digest]


def test_original_named_by_digest_is_tagged_after_the_source_tags_given(
    registry: RunningRegistry, convert: Convert
) -> None:
    repo = "conv/by-digest"
    pushed = push_image(registry.url, repo, "v3")

    result = convert(repo, pushed.digest, source_tags=("v3", "latest"))

    assert result.tags == ("v3-esgz", "latest-esgz")
    for tag in result.tags:
        assert pull_manifest(registry.url, repo, tag).digest == result.converted_digest
    assert fallback_referrers(registry.url, repo, pushed.digest) == [result.converted_digest]


HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
COSIGN_LAYER = "application/vnd.dev.cosign.simplesigning.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
NONDIST_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"


@pytest.mark.parametrize(
    ("config_type", "layer_type", "artifact_type", "with_subject", "error", "message"),
    [
        (HELM_CONFIG, HELM_LAYER, "", False, NotAnImage, "helm.config.v1.*not an image config"),
        (OCI_CONFIG, COSIGN_LAYER, "", False, NotAnImage, "cosign.simplesigning.* not an image"),
        (EMPTY_CONFIG, "text/spdx+json", "text/spdx+json", False, NotAnImage, "spdx"),
        (EMPTY_CONFIG, "text/spdx+json", "text/spdx+json", True, NotAnOriginal, "subject"),
    ],
    ids=["helm-chart", "cosign-signature", "sbom", "sbom-referrer"],
)
def test_non_image_artifacts_are_refused_and_nothing_is_pushed(
    registry: RunningRegistry,
    config_type: str,
    layer_type: str,
    artifact_type: str,
    with_subject: bool,
    error: type[Exception],
    message: str,
    convert: Convert,
) -> None:
    repo = "conv/artifacts"
    subject = None
    if with_subject:
        image = push_image(registry.url, repo, "img")
        subject = {"mediaType": image.media_type, "digest": image.digest, "size": image.size}
    artifact = push_artifact(
        registry.url,
        repo,
        "",
        config_type,
        layer_type,
        b'{"payload": true}',
        subject=subject,
        artifact_type=artifact_type,
    )
    writes = write_count(registry.log_text(), repo)

    with pytest.raises(error, match=message):
        convert(repo, artifact.digest)

    assert write_count(registry.log_text(), repo) == writes


def test_a_push_that_died_before_the_fallback_index_is_listed_without_pushing_again(
    registry: RunningRegistry, client: RegistryClient, convert: Convert
) -> None:
    repo = "conv/half-pushed"
    pushed = push_image(registry.url, repo, "v1")
    first = convert(repo, "v1")
    # What a process killed right after its manifest PUT leaves: no fallback index entry.
    client.remove_from_fallback_index(repo, pushed.digest, [first.converted_digest])
    assert client.referrers(repo, pushed.digest) == []

    second = convert(repo, "v1")

    assert second.converted_digest == first.converted_digest
    assert fallback_referrers(registry.url, repo, pushed.digest) == [first.converted_digest]
    logged = parse_access_log(registry.log_text())
    assert len(writes_to_manifests(logged, repo, [first.converted_digest])) == 1


def test_converted_output_is_never_converted_again(
    registry: RunningRegistry, convert: Convert
) -> None:
    repo = "conv/loop"
    push_image(registry.url, repo, "v1")
    result = convert(repo, "v1")
    with pytest.raises(NotAnOriginal, match="has a subject"):
        convert(repo, "v1-esgz")
    assert result.tags == ("v1-esgz",)


def test_non_distributable_layers_are_refused(registry: RunningRegistry, convert: Convert) -> None:
    repo = "conv/foreign"
    layer = gzip.compress(b"\0" * 1024)
    layer_digest = push_blob(registry.url, repo, layer)
    config = json.dumps(
        {"architecture": "amd64", "os": "windows", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    config_digest = push_blob(registry.url, repo, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": NONDIST_LAYER, "digest": layer_digest, "size": len(layer)}],
    }
    push_manifest(registry.url, repo, "v1", json.dumps(manifest).encode(), OCI_MANIFEST)
    writes = write_count(registry.log_text(), repo)

    with pytest.raises(UnsupportedLayer, match=r"layers\[0\].*non-distributable"):
        convert(repo, "v1")

    assert write_count(registry.log_text(), repo) == writes


@pytest.mark.parametrize(
    "layer",
    [
        Descriptor(FOREIGN_LAYER, "sha256:" + "a" * 64, 10, urls=("https://example.invalid/l",)),
        Descriptor(DOCKER_LAYER, "sha256:" + "a" * 64, 10, urls=("https://example.invalid/l",)),
        Descriptor(NONDIST_LAYER, "sha256:" + "a" * 64, 10),
    ],
    ids=["docker-foreign", "urls", "oci-non-distributable"],
)
def test_foreign_layer_descriptors_are_refused(layer: Descriptor) -> None:
    with pytest.raises(UnsupportedLayer, match=r"where: sha256:a+ is a non-distributable layer"):
        check_convertible_layer(layer, "where")


def test_unknown_format_is_refused_before_any_request(
    client: RegistryClient, layer_cache: LayerCache, work_dir: Path
) -> None:
    with pytest.raises(UnsupportedFormat, match="'zstd-chunked' is not supported"):
        convert_image(
            client,
            "conv/none",
            "v1",
            "zstd-chunked",
            OPTIONS,
            work_dir=work_dir,
            layer_cache=layer_cache,
        )


def test_target_tag_moves_when_the_original_tag_moves(
    registry: RunningRegistry, convert: Convert
) -> None:
    repo = "conv/moving"
    base, _ = sample_layers()
    push_image(registry.url, repo, "v1", [base])
    first = convert(repo, "v1")
    second_image = push_image(registry.url, repo, "v1", [[Entry("new", data=b"new\n")]])

    second = convert(repo, "v1")

    assert second.original_digest == second_image.digest
    assert second.converted_digest != first.converted_digest
    assert pull_manifest(registry.url, repo, "v1-esgz").digest == second.converted_digest


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        ("-esgz", "names sha256:[0-9a-f]+, which is not an accelerated copy"),
        ("", "the tag suffix is empty"),
    ],
)
def test_a_tag_naming_an_original_is_never_moved(
    registry: RunningRegistry, convert: Convert, suffix: str, message: str
) -> None:
    repo = "conv/taken"
    push_image(registry.url, repo, "v1")
    users_own = push_image(registry.url, repo, "v1-esgz", [[Entry("mine", data=b"mine\n")]])
    writes = write_count(registry.log_text(), repo)

    with pytest.raises(InvalidTarget, match=message):
        convert(repo, "v1", ConversionOptions(tag_suffix=suffix))

    assert write_count(registry.log_text(), repo) == writes
    assert pull_manifest(registry.url, repo, "v1-esgz").digest == users_own.digest


def test_target_tags_append_the_suffix_and_refuse_invalid_results() -> None:
    assert target_tags(["v1", "latest", "v1"], "-esgz") == ("v1-esgz", "latest-esgz")
    assert target_tags([], "-esgz") == ()
    with pytest.raises(InvalidTarget, match="not a valid tag"):
        target_tags(["v" * 125], "-esgz")
    with pytest.raises(InvalidTarget, match="'v1/x'"):
        target_tags(["v1"], "/x")
