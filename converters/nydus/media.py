"""Media types and annotations of nydus layers, as nydus-snapshotter and Harbor read them."""

from __future__ import annotations

MEDIA_TYPE_BLOB = "application/vnd.oci.image.layer.nydus.blob.v1"
MEDIA_TYPE_BOOTSTRAP = "application/vnd.oci.image.layer.v1.tar+gzip"
ANNOTATION_BLOB = "containerd.io/snapshot/nydus-blob"
ANNOTATION_BOOTSTRAP = "containerd.io/snapshot/nydus-bootstrap"
ANNOTATION_FS_VERSION = "containerd.io/snapshot/nydus-fs-version"
