"""HarborClient against the Harbor emulator (over the real registry)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from harbor_api.credentials import Credentials
from harbor_api.errors import Denied, NotFound, Unauthorized, Unreachable
from harbor_api.harbor import HARBOR_ENDPOINTS, HarborClient, encode_q, encode_repository_path
from harbor_api.harbor_models import WebhookPolicy, WebhookTarget
from harbor_api.transport import NO_RETRY, TlsOptions
from tests.support.harbor_emulator import ADMIN, ADMIN_PASSWORD, RunningHarbor, harbor_session
from tests.support.images import push_artifact, push_image, push_index
from tests.support.registry_server import RunningRegistry, free_port
from tests.support.swagger_contract import contract_checked_harbor

PLAIN = TlsOptions(plain_http=True)


@pytest.fixture
def harbor(registry: RunningRegistry) -> Iterator[RunningHarbor]:
    with contract_checked_harbor(registry.url) as running:
        yield running


@pytest.fixture
def admin_client(harbor: RunningHarbor) -> Iterator[HarborClient]:
    with HarborClient(
        harbor.url, credentials=Credentials(ADMIN, ADMIN_PASSWORD), tls=PLAIN
    ) as client:
        yield client


@pytest.fixture
def pusher() -> requests.Session:
    return harbor_session(ADMIN, ADMIN_PASSWORD)


def test_repository_path_and_q_are_encoded_for_harbors_second_decoding() -> None:
    assert encode_repository_path("team/api/server") == "team%252Fapi%252Fserver"
    assert encode_q("media_type=a+json,size=50%") == "media_type=a%2Bjson,size=50%25"


def test_systeminfo_and_projects_skip_proxy_cache(
    harbor: RunningHarbor, admin_client: HarborClient
) -> None:
    harbor.emulator.state.add_project("apps")
    harbor.emulator.state.add_project("dockerhub", registry_id=3)
    info = admin_client.systeminfo()
    assert info.harbor_version.startswith("v2.15")
    assert info.external_url == harbor.url
    assert [p.name for p in admin_client.projects()] == ["apps"]
    admin_client.ping()


def test_nested_repository_artifacts_tags_children_and_accessories(
    harbor: RunningHarbor, admin_client: HarborClient, pusher: requests.Session
) -> None:
    harbor.emulator.state.add_project("shop")
    image = push_image(harbor.url, "shop/team/cart", "1.0", session=pusher)
    index, children = push_index(
        harbor.url, "shop/team/cart", "multi", ["linux/amd64", "linux/arm64"], session=pusher
    )
    copy = push_artifact(
        harbor.url,
        "shop/team/cart",
        "1.0-esgz",
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        b"layer",
        subject={"mediaType": image.media_type, "digest": image.digest, "size": image.size},
        session=pusher,
    )
    (repo,) = admin_client.repositories("shop")
    assert (repo.name, repo.project, repo.path, repo.artifact_count) == (
        "shop/team/cart",
        "shop",
        "team/cart",
        2,
    )
    listed = {a.digest: a for a in admin_client.artifacts("shop", "team/cart")}
    assert set(listed) == {image.digest, index.digest}
    assert listed[image.digest].tags == ("1.0",)
    assert [(a.digest, a.type) for a in listed[image.digest].accessories] == [
        (copy.digest, "subject.accessory")
    ]
    assert listed[image.digest].push_time is not None
    refs = listed[index.digest].references
    assert [(r.digest, r.platform and r.platform.architecture) for r in refs] == [
        (children[0].digest, "amd64"),
        (children[1].digest, "arm64"),
    ]
    one = admin_client.artifact("shop", "team/cart", copy.digest)
    assert (one.digest, one.tags) == (copy.digest, ("1.0-esgz",))
    accessories = list(admin_client.accessories("shop", "team/cart", "1.0"))
    assert [a.digest for a in accessories] == [copy.digest]


def test_q_filters_with_plus_tags_and_push_time(
    harbor: RunningHarbor, admin_client: HarborClient
) -> None:
    state = harbor.emulator.state
    state.add_project("q")
    now = datetime.now(UTC).replace(microsecond=0)
    old = state.add_artifact(
        "q/app", "sha256:" + "1" * 64, tags=["old"], push_time=now - timedelta(days=3)
    )
    new = state.add_artifact("q/app", "sha256:" + "2" * 64, push_time=now)
    helm = state.add_artifact(
        "q/app",
        "sha256:" + "3" * 64,
        tags=["chart"],
        config_media_type="application/vnd.cncf.helm.config.v1+json",
        push_time=now - timedelta(days=1),
    )

    def digests(**kwargs: object) -> list[str]:
        return [a.digest for a in admin_client.artifacts("q", "app", **kwargs)]  # type: ignore[arg-type]

    assert digests() == [new.digest, helm.digest, old.digest]
    assert digests(q="media_type=application/vnd.oci.image.config.v1+json", sort="push_time") == [
        old.digest,
        new.digest,
    ]
    assert digests(q="tags=*") == [helm.digest, old.digest]
    assert digests(pushed_since=now - timedelta(days=2)) == [new.digest, helm.digest]
    assert digests(q="tags=*", pushed_since=now - timedelta(days=2)) == [helm.digest]


def test_listing_10000_artifacts_in_200_repositories_makes_one_call_per_page(
    harbor: RunningHarbor, admin_client: HarborClient
) -> None:
    state = harbor.emulator.state
    state.add_project("bulk")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for r in range(200):
        for a in range(50):
            n = r * 50 + a
            state.add_artifact(
                f"bulk/svc/r{r:03d}",
                f"sha256:{n:064x}",
                tags=[f"t{a}"],
                push_time=start + timedelta(seconds=n),
            )
    state.add_project("deep")
    for a in range(250):
        state.add_artifact("deep/big", f"sha256:{a:064x}", push_time=start + timedelta(seconds=a))
    harbor.emulator.calls.clear()

    seen = 0
    for repo in admin_client.repositories("bulk"):
        seen += sum(1 for _ in admin_client.artifacts("bulk", repo.path))
    assert seen == 10_000
    # 200 repositories = 2 full pages (X-Total-Count says stop); 50 artifacts = 1 short page each
    assert dict(harbor.emulator.calls) == {"repositories": 2, "artifacts": 200}

    harbor.emulator.calls.clear()
    assert len(list(admin_client.artifacts("deep", "big"))) == 250
    assert dict(harbor.emulator.calls) == {"artifacts": 3}
    requested = [dict(e.query) for e in harbor.emulator.exchanges[-3:]]
    assert [(q["page"], q["page_size"]) for q in requested] == [
        ("1", "100"),
        ("2", "100"),
        ("3", "100"),
    ]


def test_listing_is_lazy(harbor: RunningHarbor, admin_client: HarborClient) -> None:
    state = harbor.emulator.state
    state.add_project("lazy")
    for a in range(150):
        state.add_artifact("lazy/app", f"sha256:{a:064x}")
    harbor.emulator.calls.clear()
    first = next(admin_client.artifacts("lazy", "app"))
    assert first.digest.startswith("sha256:")
    assert harbor.emulator.calls["artifacts"] == 1


def test_webhook_policies_create_list_update(
    harbor: RunningHarbor, admin_client: HarborClient
) -> None:
    harbor.emulator.state.add_project("hooks")
    policy = WebhookPolicy(
        name="acceld",
        enabled=True,
        event_types=("PUSH_ARTIFACT",),
        targets=(WebhookTarget("http://127.0.0.1:9/webhooks/harbor", "Bearer tok", "CloudEvents"),),
    )
    policy_id = admin_client.create_webhook_policy("hooks", policy)
    (stored,) = admin_client.webhook_policies("hooks")
    assert stored.id == policy_id
    assert stored.enabled is True
    assert stored.targets == policy.targets
    assert "Bearer tok" not in repr(stored)
    moved = WebhookPolicy(
        "acceld",
        True,
        ("PUSH_ARTIFACT",),
        (WebhookTarget("http://127.0.0.1:10/x", "t2"),),
        id=policy_id,
    )
    admin_client.update_webhook_policy("hooks", moved)
    (after,) = admin_client.webhook_policies("hooks")
    assert after.targets == moved.targets


def test_robots_list_and_get(harbor: RunningHarbor, admin_client: HarborClient) -> None:
    name = harbor.emulator.state.add_robot(
        "acceld", "pw", [("repository", "pull"), ("artifact", "list")], "apps"
    )
    (robot,) = admin_client.robots(q=f"name={name}")
    assert robot.name == "robot$apps+acceld"
    assert robot.permissions[0].namespace == "apps"
    assert set(robot.permissions[0].access) == {("repository", "pull"), ("artifact", "list")}
    assert admin_client.robot(robot.id) == robot


def test_harbor_down_says_it_cannot_reach_harbor() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = HarborClient(url, credentials=None, tls=PLAIN, retry=NO_RETRY)
    with pytest.raises(Unreachable) as caught:
        client.systeminfo()
    assert str(caught.value) == f"cannot reach Harbor at {url}: connection refused"


def test_wrong_robot_secret_is_detected_although_harbor_answers_200(
    harbor: RunningHarbor,
) -> None:
    robot = harbor.emulator.state.add_robot("acceld", "right-secret", [], "*")
    client = HarborClient(harbor.url, credentials=Credentials(robot, "wrong-secret"), tls=PLAIN)
    with pytest.raises(Unauthorized) as caught:
        client.systeminfo()
    message = str(caught.value)
    assert "check the robot name (robot$…) and its secret" in message
    assert robot in message
    assert "wrong-secret" not in message


def test_robot_lacking_a_permission_is_told_which(harbor: RunningHarbor) -> None:
    state = harbor.emulator.state
    state.add_project("locked")
    state.add_artifact("locked/app", "sha256:" + "a" * 64, tags=["1"])
    robot = state.add_robot("half", "pw", [("repository", "list")], "locked")
    client = HarborClient(harbor.url, credentials=Credentials(robot, "pw"), tls=PLAIN)
    assert [r.name for r in client.repositories("locked")] == ["locked/app"]
    with pytest.raises(Denied) as caught:
        list(client.artifacts("locked", "app"))
    assert f"{robot!r} lacks the permission artifact:list on project 'locked'" in str(caught.value)
    with pytest.raises(Denied, match="lacks the permission accessory:list"):
        list(client.accessories("locked", "app", "1"))


def test_missing_project_is_named(harbor: RunningHarbor, admin_client: HarborClient) -> None:
    with pytest.raises(NotFound) as caught:
        list(admin_client.repositories("nope"))
    assert f"project 'nope' does not exist in Harbor at {harbor.url}" in str(caught.value)


def test_every_call_reports_one_of_the_declared_endpoint_labels(harbor: RunningHarbor) -> None:
    seen: list[tuple[str, str]] = []
    harbor.emulator.state.add_project("obs")
    harbor.emulator.state.add_artifact("obs/app", "sha256:" + "c" * 64, tags=["1"])
    client = HarborClient(
        harbor.url,
        credentials=Credentials(ADMIN, ADMIN_PASSWORD),
        tls=PLAIN,
        observer=lambda endpoint, code, seconds: seen.append((endpoint, code)),
    )
    client.systeminfo()
    list(client.artifacts("obs", "app"))
    with pytest.raises(NotFound):
        client.artifact("obs", "app", "missing")
    assert seen == [
        ("harbor_systeminfo", "200"),
        ("harbor_artifacts", "200"),
        ("harbor_artifact", "404"),
    ]
    assert {endpoint for endpoint, _ in seen} <= set(HARBOR_ENDPOINTS)
