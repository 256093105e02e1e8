import requests

from tests.support.images import push_image, push_index
from tests.support.registry_server import RunningRegistry


def test_sample_image_and_index_land_in_the_registry(registry: RunningRegistry) -> None:
    image = push_image(registry.url, "support/sample", "v1")
    got = requests.get(
        f"{registry.url}/v2/support/sample/manifests/v1",
        headers={"Accept": image.media_type},
        timeout=5,
    )
    assert got.headers["Docker-Content-Digest"] == image.digest
    index, children = push_index(
        registry.url, "support/multi", "v1", ["linux/amd64", "linux/arm64/v8"]
    )
    assert len(children) == 2
    got = requests.get(
        f"{registry.url}/v2/support/multi/manifests/{index.digest}",
        headers={"Accept": index.media_type},
        timeout=5,
    )
    assert got.status_code == 200
