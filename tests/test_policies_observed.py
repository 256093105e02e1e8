import pytest

from harbor_api.annotations import DRIVER_NAME, NYDUS_BOOTSTRAP, STARGZ_TOC_DIGEST
from harbor_api.oci import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, Descriptor, Index, Manifest
from policies.observed import classify_referrer

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


def _layer(digest: str = D1, **annotations: str) -> Descriptor:
    return Descriptor(OCI_LAYER_GZIP, digest, 10, annotations)


def _manifest(*layers: Descriptor, **annotations: str) -> Manifest:
    return Manifest(Descriptor(OCI_CONFIG, D3, 2), layers, annotations=annotations)


def test_estargz_is_recognised_by_toc_digest_layers() -> None:
    manifest = _manifest(_layer(**{STARGZ_TOC_DIGEST: D2}), _layer(**{STARGZ_TOC_DIGEST: D2}))
    assert classify_referrer(manifest) == "estargz"


def test_nydus_is_recognised_by_its_bootstrap_as_last_layer_only() -> None:
    assert classify_referrer(_manifest(_layer(), _layer(**{NYDUS_BOOTSTRAP: "true"}))) == "nydus"
    assert classify_referrer(_manifest(_layer(**{NYDUS_BOOTSTRAP: "true"}), _layer())) is None


@pytest.mark.parametrize(
    "key",
    [
        "io.github.containers.zstd-chunked.manifest-checksum",
        "io.containers.zstd-chunked.manifest-checksum",
    ],
)
def test_zstd_chunked_wins_over_the_estargz_toc_key_it_may_also_carry(key: str) -> None:
    manifest = _manifest(_layer(**{key: D2, STARGZ_TOC_DIGEST: D2}))
    assert classify_referrer(manifest) == "zstd-chunked"


def test_a_signature_or_plain_image_is_not_accelerated() -> None:
    assert classify_referrer(_manifest(_layer())) is None


def test_driver_annotation_is_a_cheap_first_look_on_descriptors_and_manifests() -> None:
    descriptor = Descriptor(OCI_MANIFEST, D1, 100, {DRIVER_NAME: "estargz"})
    assert classify_referrer(descriptor) == "estargz"
    assert classify_referrer(Descriptor(OCI_MANIFEST, D1, 100)) is None
    assert classify_referrer(_manifest(_layer(), **{DRIVER_NAME: "nydus"})) == "nydus"


def test_an_index_is_the_format_all_its_children_share() -> None:
    index = Index((Descriptor(OCI_MANIFEST, D1, 1), Descriptor(OCI_MANIFEST, D2, 1)))
    assert classify_referrer(index, {D1: "estargz", D2: "estargz"}) == "estargz"
    assert classify_referrer(index, {D1: "estargz", D2: None}) is None
    assert classify_referrer(index, {D1: "estargz", D2: "nydus"}) is None
    assert classify_referrer(index, {D1: "estargz"}) is None
    assert classify_referrer(Index(()), {}) is None


def test_index_children_without_known_formats_fall_back_to_their_annotations() -> None:
    children = tuple(Descriptor(OCI_MANIFEST, d, 1, {DRIVER_NAME: "estargz"}) for d in (D1, D2))
    assert classify_referrer(Index(children)) == "estargz"
