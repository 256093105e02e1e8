"""Nydus (RAFS v6) conversion written in Python: layers become nydus blobs, an image's layers
merge into one bootstrap layer. Pure: streams in, files out, no external binary, no network.
"""

from converters.nydus.image import BootstrapLayer, write_bootstrap_layer
from converters.nydus.layer import NydusLayer, convert_layer
from converters.nydus.media import (
    ANNOTATION_BLOB,
    ANNOTATION_BOOTSTRAP,
    ANNOTATION_FS_VERSION,
    MEDIA_TYPE_BLOB,
    MEDIA_TYPE_BOOTSTRAP,
)
from converters.nydus.options import NydusOptions

__all__ = [
    "ANNOTATION_BLOB",
    "ANNOTATION_BOOTSTRAP",
    "ANNOTATION_FS_VERSION",
    "MEDIA_TYPE_BLOB",
    "MEDIA_TYPE_BOOTSTRAP",
    "BootstrapLayer",
    "NydusLayer",
    "NydusOptions",
    "convert_layer",
    "write_bootstrap_layer",
]
