"""Check a nydus image acceld pushed, from the registry's bytes alone.

The converted manifest and config are checked against `nydus.md` §1 (blob layers, bootstrap
last with its annotations, diff_ids, history, subject, no artifactType); then every blob and
the bootstrap layer are pulled, the bootstrap is validated with its blobs by the independent
RAFS reader, and the kernel's EROFS mounts it over cache images rebuilt from the blobs. The
mounted tree must equal umoci's flattening of the original image pulled from the same registry.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from harbor_api.annotations import DRIVER_NAME, NYDUS_BLOB, NYDUS_BOOTSTRAP, NYDUS_FS_VERSION
from tests.support.converted_images import Pulled, pull_blob, pull_manifest
from tests.support.erofs_mount import fsck_erofs, mounted_rafs, require_fsck, write_cache_images
from tests.support.oci_flatten import (
    TreeSnapshot,
    snapshot_tree,
    tree_differences,
    umoci_unpack,
    write_oci_layout,
)
from tests.support.rafs_reader import validate_image

NYDUS_BLOB_TYPE = "application/vnd.oci.image.layer.nydus.blob.v1"
GZIP_LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


def _hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_nydus_manifest(converted: Pulled, original: Pulled, config: dict[str, Any]) -> None:
    """The manifest and config rules nydusify checks, and the acceleration annotations."""
    data = converted.json
    layers = data["layers"]
    assert "artifactType" not in data
    assert data["subject"] == original.descriptor
    assert data["annotations"][DRIVER_NAME] == "nydus"
    *blobs, bootstrap = layers
    assert len(blobs) == len(original.json["layers"])
    for blob in blobs:
        assert blob["mediaType"] == NYDUS_BLOB_TYPE
        assert blob["annotations"] == {NYDUS_BLOB: "true"}
    assert bootstrap["mediaType"] == GZIP_LAYER_TYPE
    assert bootstrap["annotations"] == {NYDUS_BOOTSTRAP: "true", NYDUS_FS_VERSION: "6"}
    diff_ids = config["rootfs"]["diff_ids"]
    assert len(diff_ids) == len(layers)
    assert diff_ids[:-1] == [blob["digest"] for blob in blobs]


def pulled_bootstrap(base_url: str, repository: str, digest: str, directory: Path) -> Path:
    """`image/image.boot` of the bootstrap layer, written under `directory`."""
    with tarfile.open(fileobj=io.BytesIO(pull_blob(base_url, repository, digest))) as archive:
        member = archive.extractfile("image/image.boot")
        assert member is not None
        path = directory / "image.boot"
        path.write_bytes(member.read())
    return path


def unpacked_original(base_url: str, original: Pulled, repository: str, directory: Path) -> Path:
    """umoci's flattening of the original image, pulled from the registry."""
    manifest = original.json
    blobs: dict[str, bytes | Path] = {}
    for descriptor in [manifest["config"], *manifest["layers"]]:
        blobs[descriptor["digest"]] = pull_blob(base_url, repository, descriptor["digest"])
    layout = write_oci_layout(directory / "layout", original.raw, blobs)
    return umoci_unpack(layout, directory / "bundle")


def mounted_tree(
    base_url: str, repository: str, converted: Pulled, directory: Path
) -> TreeSnapshot:
    """The tree the kernel shows for the pushed nydus image, after the RAFS validator."""
    *blobs, bootstrap = converted.json["layers"]
    directory.mkdir(parents=True, exist_ok=True)
    blob_paths: dict[str, Path] = {}
    for blob in blobs:
        path = directory / blob["digest"].removeprefix("sha256:")
        path.write_bytes(pull_blob(base_url, repository, blob["digest"]))
        blob_paths[path.name] = path
    boot_path = pulled_bootstrap(base_url, repository, bootstrap["digest"], directory)
    boot, _ = validate_image(
        boot_path.read_bytes(),
        {blob_id: path.read_bytes() for blob_id, path in blob_paths.items()},
        blob_id=_hex,
    )
    (directory / "cache").mkdir()
    caches = write_cache_images(boot, blob_paths, directory / "cache")
    with mounted_rafs(boot_path, caches, directory / "mnt") as mountpoint:
        tree = snapshot_tree(mountpoint, dir_mtimes=False)
    require_fsck()
    checked = fsck_erofs(boot_path, caches, extract_to=directory / "extract")
    assert checked.ok, checked.output
    return tree


def assert_mounts_as_original(
    base_url: str, repository: str, converted_ref: str, original_ref: str, directory: Path
) -> Pulled:
    """Every check above, for one pushed nydus image manifest; the converted manifest."""
    converted = pull_manifest(base_url, repository, converted_ref)
    original = pull_manifest(base_url, repository, original_ref)
    config = json.loads(pull_blob(base_url, repository, converted.json["config"]["digest"]))
    original_config = json.loads(pull_blob(base_url, repository, original.json["config"]["digest"]))
    check_nydus_manifest(converted, original, config)
    assert len(config["history"]) == len(original_config.get("history", [])) + 1
    assert config["config"] == original_config.get("config", config["config"])
    rootfs = unpacked_original(base_url, original, repository, directory / "original")
    expected = snapshot_tree(rootfs, dir_mtimes=False)
    actual = mounted_tree(base_url, repository, converted, directory / "converted")
    differences = tree_differences(expected, actual)
    assert not differences, "\n".join(differences)
    return converted
