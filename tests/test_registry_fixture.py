import requests

from tests.support.registry_server import RunningRegistry


def test_registry_fixture_serves_the_distribution_api(registry: RunningRegistry) -> None:
    answer = requests.get(f"{registry.url}/v2/", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
