"""Media types and annotations of nydus layers, as nydus-snapshotter and Harbor read them."""

from __future__ import annotations

from harbor_api.annotations import NYDUS_BLOB, NYDUS_BOOTSTRAP, NYDUS_FS_VERSION

MEDIA_TYPE_BLOB = "application/vnd.oci.image.layer.nydus.blob.v1"
MEDIA_TYPE_BOOTSTRAP = "application/vnd.oci.image.layer.v1.tar+gzip"
ANNOTATION_BLOB = NYDUS_BLOB
ANNOTATION_BOOTSTRAP = NYDUS_BOOTSTRAP
ANNOTATION_FS_VERSION = NYDUS_FS_VERSION
