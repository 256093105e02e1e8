"""The last layer of a nydus image: the merged RAFS bootstrap of all its blob layers.

Each converted blob carries its layer's own bootstrap and chunk tables at its tail, so the merge
reads only those few ranges back from the registry: a layer taken from the layer cache (never
converted in this run, perhaps for another image) merges exactly like a fresh one.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from converters import nydus
from converters.nydus.layer_reader import read_layer
from harbor_api.errors import RegistryError
from harbor_api.oci import Descriptor
from harbor_api.registry import RegistryClient
from harbor_api.version import ACCELD_VERSION
from reconciler.conversion.disk_budget import ClaimingWriter, Reservation


@dataclass(frozen=True)
class PushedBootstrap:
    descriptor: Descriptor
    diff_id: str
    bytes_uploaded: int

    def history(self) -> dict[str, str]:
        """The image config history entry of the bootstrap layer."""
        return {
            "created_by": f"acceld {ACCELD_VERSION}: nydus bootstrap (RAFS v6)",
            "comment": "nydus bootstrap",
        }


def push_bootstrap(
    registry: RegistryClient,
    repository: str,
    blobs: Sequence[Descriptor],
    options: nydus.NydusOptions,
    work_dir: Path,
    room: Reservation,
) -> PushedBootstrap:
    """Merge the bootstraps of `blobs` (lowest layer first) and push the bootstrap layer;
    its file in `work_dir` claims room from `room` as it is written."""
    layers = [
        read_layer(_range_reader(registry, repository, blob.digest), blob.size, blob.digest)
        for blob in blobs
    ]
    before = room.used
    try:
        with tempfile.TemporaryDirectory(dir=work_dir, prefix="bootstrap-") as private:
            path = Path(private) / "bootstrap.tar.gz"
            with path.open("wb") as out:
                written = nydus.write_bootstrap_layer(
                    layers, cast(BinaryIO, ClaimingWriter(out, room.claim)), options
                )
            uploaded = 0
            if not registry.blob_exists(repository, written.digest):
                registry.upload_blob(repository, path, written.digest, written.size)
                uploaded = written.size
    finally:
        room.release(room.used - before)
    descriptor = Descriptor(
        nydus.MEDIA_TYPE_BOOTSTRAP, written.digest, written.size, written.annotations()
    )
    return PushedBootstrap(descriptor, written.diff_id, uploaded)


def _range_reader(
    registry: RegistryClient, repository: str, digest: str
) -> Callable[[int, int], bytes]:
    def read_at(offset: int, length: int) -> bytes:
        with registry.open_blob(repository, digest, offset) as stream:
            data = stream.read(length)
        if len(data) != length:
            # The registry's answer was cut short: retried later, not the blob's fault.
            raise RegistryError(
                f"GET {repository}@{digest}: {len(data)} of {length} bytes at offset {offset}"
            )
        return data

    return read_at
