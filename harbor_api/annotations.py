"""Annotation keys of accelerated images, each defined once.

The acceleration keys are the ones Harbor's Go acceleration service put on its outputs, so the
outputs of either tool are recognised by both. The layer keys are those of the snapshotters
that read each format (stargz-snapshotter, nydus-snapshotter, containers/storage).
"""

from __future__ import annotations

DRIVER_NAME = "io.goharbor.artifact.v1alpha1.acceleration.driver.name"
DRIVER_VERSION = "io.goharbor.artifact.v1alpha1.acceleration.driver.version"
SOURCE_DIGEST = "io.goharbor.artifact.v1alpha1.acceleration.source.digest"
ACCELERATION_ANNOTATIONS = (SOURCE_DIGEST, DRIVER_NAME, DRIVER_VERSION)
DRIVER_OPTIONS_DIGEST = "io.goharbor.artifact.v1alpha1.acceleration.driver.options.digest"
"""acceld's own addition beside Harbor's keys: the digest of the format options that decide the
converted bytes (`policies.outdated.options_digest`), so a policy change can be told apart."""

STARGZ_TOC_DIGEST = "containerd.io/snapshot/stargz/toc.digest"
STARGZ_UNCOMPRESSED_SIZE = "io.containers.estargz.uncompressed-size"

NYDUS_BOOTSTRAP = "containerd.io/snapshot/nydus-bootstrap"
NYDUS_BLOB = "containerd.io/snapshot/nydus-blob"
NYDUS_FS_VERSION = "containerd.io/snapshot/nydus-fs-version"

ZSTD_CHUNKED_CHECKSUMS = (
    "io.github.containers.zstd-chunked.manifest-checksum",
    # The key before containers/storage f98fa396 (2022-11); stargz-snapshotter still writes it.
    "io.containers.zstd-chunked.manifest-checksum",
)
