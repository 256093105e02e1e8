"""The client's requests and the emulator's answers follow Harbor's swagger.yaml (v2.15.2)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harbor_api.credentials import Credentials
from harbor_api.harbor import HarborClient
from harbor_api.harbor_models import WebhookPolicy, WebhookTarget
from harbor_api.transport import TlsOptions
from tests.conftest import SWAGGER
from tests.support.harbor_emulator import ADMIN, ADMIN_PASSWORD, RunningHarbor
from tests.support.registry_server import RunningRegistry
from tests.support.swagger_contract import (
    SwaggerContract,
    contract_checked_harbor,
    load_contract,
)

pytestmark = pytest.mark.skipif(
    not SWAGGER.exists(),
    reason=f"{SWAGGER} is absent (it ships in ../shared beside the checkout): "
    "Harbor's API contract cannot be checked",
)


@pytest.fixture
def contract() -> SwaggerContract:
    return load_contract(SWAGGER)


@pytest.fixture
def harbor(registry: RunningRegistry) -> Iterator[RunningHarbor]:
    with contract_checked_harbor(registry.url) as running:
        yield running


def test_every_client_call_is_a_swagger_operation_with_declared_parameters(
    harbor: RunningHarbor, contract: SwaggerContract
) -> None:
    state = harbor.emulator.state
    state.add_project("apps")
    state.add_artifact("apps/team/api", "sha256:" + "a" * 64, tags=["1"])
    state.add_artifact(
        "apps/team/api",
        "sha256:" + "b" * 64,
        subject="sha256:" + "a" * 64,
        accessory="subject.accessory",
    )
    robot = state.add_robot("acceld", "pw", [("repository", "pull")], "apps")
    client = HarborClient(
        harbor.url, credentials=Credentials(ADMIN, ADMIN_PASSWORD), tls=TlsOptions(plain_http=True)
    )
    client.ping()
    client.systeminfo()
    list(client.projects())
    list(client.repositories("apps"))
    list(client.artifacts("apps", "team/api", q="tags=*", sort="-push_time"))
    client.artifact("apps", "team/api", "1")
    list(client.accessories("apps", "team/api", "sha256:" + "a" * 64))
    target = WebhookTarget("http://127.0.0.1:9/webhooks/harbor", "tok")
    policy_id = client.create_webhook_policy(
        "apps", WebhookPolicy("acceld", True, ("PUSH_ARTIFACT",), (target,))
    )
    list(client.webhook_policies("apps"))
    client.update_webhook_policy(
        "apps", WebhookPolicy("acceld", True, ("PUSH_ARTIFACT",), (target,), id=policy_id)
    )
    (listed,) = client.robots(q=f"name={robot}")
    client.robot(listed.id)

    operations = set()
    for exchange in harbor.emulator.exchanges:
        assert exchange.status < 400, exchange
        assert (
            contract.request_problems(
                exchange.method, exchange.raw_path, exchange.query, exchange.headers
            )
            == []
        )
        assert (
            contract.response_problems(
                exchange.method, exchange.raw_path, exchange.status, exchange.body
            )
            == []
        )
        operations.add(contract.operation(exchange.method, exchange.raw_path)[0].name)
    assert operations == {
        "getPing",
        "getSystemInfo",
        "listProjects",
        "listRepositories",
        "listArtifacts",
        "getArtifact",
        "listAccessories",
        "CreateWebhookPolicyOfProject",
        "ListWebhookPoliciesOfProject",
        "UpdateWebhookPolicyOfProject",
        "ListRobot",
        "GetRobotByID",
    }


def test_contract_catches_undeclared_parameters_and_bad_values(contract: SwaggerContract) -> None:
    path = "/api/v2.0/projects/p/repositories/a%252Fb/artifacts"
    assert contract.request_problems("GET", path, [("with_tag", "true")], {}) == []
    assert contract.request_problems("GET", path, [("page_size", "500")], {}) == [
        "listArtifacts: query page_size: 500 is above the maximum 100"
    ]
    assert contract.request_problems("GET", path, [("tagged", "1")], {}) == [
        "listArtifacts: query parameter 'tagged' is not declared"
    ]
    assert contract.request_problems("GET", path, [("with_tag", "yes")], {}) == [
        "listArtifacts: query with_tag: expected true or false, got 'yes'"
    ]
    single = "/api/v2.0/projects/p/repositories/a/b/artifacts"
    assert contract.request_problems("GET", single, [], {}) == [
        f"GET {single}: no operation in swagger.yaml"
    ]


def test_contract_catches_answers_of_the_wrong_shape(contract: SwaggerContract) -> None:
    assert contract.response_problems("GET", "/api/v2.0/projects", 200, [{"name": "a"}]) == []
    assert contract.response_problems(
        "GET", "/api/v2.0/projects", 200, [{"name": "a", "project_id": "7"}]
    ) == ["listProjects 200: 0/project_id: '7' is not of type 'integer'"]
    assert contract.response_problems(
        "GET", "/api/v2.0/projects", 422, {"errors": [{"code": 1}]}
    ) == ["listProjects 422: errors/0/code: 1 is not of type 'string'"]
    assert contract.response_problems("GET", "/api/v2.0/projects", 204, None) == [
        "listProjects: status 204 is not declared"
    ]
