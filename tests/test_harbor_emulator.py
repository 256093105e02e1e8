"""The Harbor emulator behaves as Harbor does where naive clients break (over a real registry)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from harbor_api.webhook_events import ArtifactEvents, parse_webhook
from tests.support.harbor_emulator import (
    ADMIN,
    ADMIN_PASSWORD,
    RunningHarbor,
    harbor_session,
)
from tests.support.images import (
    OCI_MANIFEST,
    Entry,
    push_artifact,
    push_image,
    push_index,
    push_manifest,
)
from tests.support.registry_server import RunningRegistry
from tests.support.swagger_contract import contract_checked_harbor

NYDUS_BOOTSTRAP = "containerd.io/snapshot/nydus-bootstrap"


@pytest.fixture
def harbor(registry: RunningRegistry) -> Iterator[RunningHarbor]:
    with contract_checked_harbor(registry.url) as running:
        yield running


@pytest.fixture
def admin() -> requests.Session:
    return harbor_session(ADMIN, ADMIN_PASSWORD)


def api(harbor: RunningHarbor, path: str) -> str:
    return f"{harbor.url}/api/v2.0{path}"


def subject_of(image: Any) -> dict[str, Any]:
    return {"mediaType": image.media_type, "digest": image.digest, "size": image.size}


def test_registry_asks_for_a_bearer_token_and_the_token_carries_only_granted_scopes(
    harbor: RunningHarbor, admin: requests.Session
) -> None:
    harbor.emulator.state.add_project("tok")
    image = push_image(harbor.url, "tok/app", "1", session=admin)
    reader = harbor.emulator.state.add_robot("reader", "s3cret", [("repository", "pull")], "tok")
    manifest_url = f"{harbor.url}/v2/tok/app/manifests/1"

    challenge = requests.get(manifest_url, timeout=10)
    assert challenge.status_code == 401
    assert challenge.headers["Www-Authenticate"] == (
        f'Bearer realm="{harbor.url}/service/token",service="harbor-registry",'
        'scope="repository:tok/app:pull"'
    )
    token = requests.get(
        f"{harbor.url}/service/token",
        params={"service": "harbor-registry", "scope": "repository:tok/app:pull,push"},
        auth=(reader, "s3cret"),
        timeout=10,
    ).json()
    assert token["expires_in"] == 1800
    bearer = {"Authorization": f"Bearer {token['token']}", "Accept": image.media_type}
    pulled = requests.get(manifest_url, headers=bearer, timeout=10)
    assert pulled.status_code == 200
    assert pulled.content == json.dumps(image.manifest).encode()
    refused = requests.put(manifest_url, headers=bearer, data=pulled.content, timeout=10)
    assert refused.status_code == 401
    assert refused.headers["Www-Authenticate"] == 'Basic realm="harbor"'


def test_wrong_robot_secret_makes_the_caller_anonymous(harbor: RunningHarbor) -> None:
    state = harbor.emulator.state
    state.add_project("open", public=True)
    state.add_project("closed")
    robot = state.add_robot("scanner", "right", [("repository", "list")], "*")

    def seen(password: str) -> list[str]:
        answer = requests.get(api(harbor, "/projects"), auth=(robot, password), timeout=10)
        assert answer.status_code == 200
        return [p["name"] for p in answer.json()]

    assert seen("right") == ["closed", "open"]
    assert seen("wrong") == ["open"]
    info = requests.get(api(harbor, "/systeminfo"), auth=(robot, "wrong"), timeout=10).json()
    assert "harbor_version" not in info


def test_sid_cookie_sent_back_makes_writes_fail_with_csrf(harbor: RunningHarbor) -> None:
    harbor.emulator.state.add_project("csrf")
    keeps_cookies = requests.Session()
    keeps_cookies.auth = (ADMIN, ADMIN_PASSWORD)
    assert keeps_cookies.get(api(harbor, "/systeminfo"), timeout=10).cookies.get("sid")
    policy = {
        "name": "x",
        "enabled": True,
        "event_types": ["PUSH_ARTIFACT"],
        "targets": [{"type": "http", "address": "http://127.0.0.1:9/"}],
    }
    answer = keeps_cookies.post(api(harbor, "/projects/csrf/webhook/policies"), json=policy)
    assert answer.status_code == 403
    assert answer.json() == {"errors": [{"code": "FORBIDDEN", "message": "CSRF token invalid"}]}
    fresh = harbor_session(ADMIN, ADMIN_PASSWORD)
    assert (
        fresh.post(api(harbor, "/projects/csrf/webhook/policies"), json=policy).status_code == 201
    )


def test_page_size_above_100_is_refused_with_422(harbor: RunningHarbor) -> None:
    answer = requests.get(api(harbor, "/projects"), params={"page_size": "101"}, timeout=10)
    assert answer.status_code == 422
    assert "less than or equal to 100" in answer.json()["errors"][0]["message"]


def test_repository_path_needs_its_slash_encoded_twice(
    harbor: RunningHarbor, admin: requests.Session
) -> None:
    harbor.emulator.state.add_project("enc")
    push_image(harbor.url, "enc/a/b", "1", session=admin)
    twice = admin.get(api(harbor, "/projects/enc/repositories/a%252Fb/artifacts"), timeout=10)
    assert twice.status_code == 200
    assert [t["name"] for t in twice.json()[0]["tags"]] == ["1"]
    once = admin.get(api(harbor, "/projects/enc/repositories/a%2Fb/artifacts"), timeout=10)
    assert once.status_code == 404
    assert once.json()["errors"][0]["code"] == "NOT_FOUND"


def test_accessories_are_hidden_from_lists_typed_and_served_as_referrers(
    harbor: RunningHarbor, admin: requests.Session
) -> None:
    harbor.emulator.state.add_project("acc")
    original = push_image(harbor.url, "acc/web", "1.0", session=admin)
    nydus_layers = [[], []]
    nydus = push_image(harbor.url, "acc/web", "1.0-nydus", nydus_layers, session=admin)
    nydus_manifest = dict(nydus.manifest)
    nydus_manifest["layers"][-1]["annotations"] = {NYDUS_BOOTSTRAP: "true"}
    nydus_manifest["subject"] = subject_of(original)
    body = json.dumps(nydus_manifest).encode()
    put = admin.put(
        f"{harbor.url}/v2/acc/web/manifests/1.0-nydus",
        data=body,
        headers={"Content-Type": nydus.media_type},
        timeout=10,
    )
    assert put.status_code == 201
    assert put.headers["OCI-Subject"] == original.digest
    signature = push_artifact(
        harbor.url,
        "acc/web",
        "",
        "application/vnd.oci.empty.v1+json",
        "application/vnd.dev.cosign.simplesigning.v1+json",
        b"sig",
        subject=subject_of(original),
        artifact_type="application/vnd.dev.cosign.artifact.sig.v1+json",
        session=admin,
    )
    listed = admin.get(
        api(harbor, "/projects/acc/repositories/web/artifacts"),
        params={"with_accessory": "true"},
        timeout=10,
    ).json()
    # the nydus manifest first pushed without subject is a plain artifact; its re-push is not
    assert {a["digest"] for a in listed} == {original.digest, nydus.digest}
    (root,) = [a for a in listed if a["digest"] == original.digest]
    types = {acc["digest"]: acc["type"] for acc in root["accessories"]}
    nydus_digest = put.headers["Docker-Content-Digest"]
    assert types == {nydus_digest: "accelerator.nydus", signature.digest: "subject.accessory"}

    referrers = admin.get(f"{harbor.url}/v2/acc/web/referrers/{original.digest}", timeout=10)
    assert referrers.headers["Content-Type"] == "application/vnd.oci.image.index.v1+json"
    assert {m["digest"] for m in referrers.json()["manifests"]} == set(types)
    filtered = admin.get(
        f"{harbor.url}/v2/acc/web/referrers/{original.digest}",
        params={"artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json"},
        timeout=10,
    )
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in filtered.json()["manifests"]] == [signature.digest]


def test_untagged_index_children_are_hidden_unless_base_is_asked(
    harbor: RunningHarbor, admin: requests.Session
) -> None:
    harbor.emulator.state.add_project("multi")
    index, children = push_index(
        harbor.url, "multi/app", "v1", ["linux/amd64", "linux/arm64/v8"], session=admin
    )
    url = api(harbor, "/projects/multi/repositories/app/artifacts")
    listed = admin.get(url, timeout=10).json()
    assert [a["digest"] for a in listed] == [index.digest]
    platforms = {r["child_digest"]: r["platform"] for r in listed[0]["references"]}
    assert platforms[children[1].digest] == {
        "architecture": "arm64",
        "os": "linux",
        "variant": "v8",
    }
    with_base = admin.get(url, params={"q": "base=*"}, timeout=10).json()
    assert {a["digest"] for a in with_base} == {index.digest, *(c.digest for c in children)}


def test_q_is_decoded_twice_so_a_plus_must_be_encoded_twice(
    harbor: RunningHarbor, admin: requests.Session
) -> None:
    harbor.emulator.state.add_project("plus")
    image = push_image(harbor.url, "plus/app", "1", session=admin)
    url = api(harbor, "/projects/plus/repositories/app/artifacts")
    q = "media_type=application/vnd.oci.image.config.v1+json"
    once = admin.get(url, params={"q": q}, timeout=10).json()
    twice = admin.get(url, params={"q": q.replace("+", "%2B")}, timeout=10).json()
    assert once == []
    assert [a["digest"] for a in twice] == [image.digest]


def test_pushes_to_a_proxy_cache_project_are_denied(
    harbor: RunningHarbor, admin: requests.Session
) -> None:
    harbor.emulator.state.add_project("cache", registry_id=4)
    with pytest.raises(requests.HTTPError) as caught:
        push_image(harbor.url, "cache/app", "1", session=admin)
    assert caught.value.response.status_code == 403


class Receiver:
    """A loopback HTTP endpoint recording webhook requests; answers `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhooks/harbor"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @Request.application
    def _app(self, request: Request) -> Response:
        self.requests.append((dict(request.headers), request.get_data()))
        return Response(status=self.status)

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.stop()


def add_policy(
    admin: requests.Session, harbor: RunningHarbor, project: str, target: dict[str, Any]
) -> None:
    policy = {
        "name": f"hook-{target['payload_format']}",
        "enabled": True,
        "event_types": ["PUSH_ARTIFACT"],
        "targets": [target],
    }
    answer = admin.post(api(harbor, f"/projects/{project}/webhook/policies"), json=policy)
    assert answer.status_code == 201, answer.text


@pytest.mark.parametrize("payload_format", ["Default", "CloudEvents"])
def test_push_is_delivered_to_the_webhook_with_the_auth_header_verbatim(
    harbor: RunningHarbor, admin: requests.Session, receiver: Receiver, payload_format: str
) -> None:
    harbor.emulator.state.add_project("hooks")
    target = {
        "type": "http",
        "address": receiver.url,
        "auth_header": "s3cr3t-token",
        "payload_format": payload_format,
    }
    add_policy(admin, harbor, "hooks", target)
    image = push_image(harbor.url, "hooks/team/api", "2.0", session=admin)
    (delivery,) = harbor.emulator.wait_for_deliveries(1)
    assert delivery.status == 200
    headers, body = receiver.requests[0]
    assert headers["Authorization"] == "s3cr3t-token"
    expected_type = (
        "application/cloudevents+json" if payload_format == "CloudEvents" else "application/json"
    )
    assert headers["Content-Type"] == expected_type
    parsed = parse_webhook(body, headers["Content-Type"], headers)
    assert isinstance(parsed, ArtifactEvents)
    (event,) = parsed.events
    assert (event.kind, event.repository, event.digest, event.tag, event.operator) == (
        "pushed",
        "hooks/team/api",
        image.digest,
        "2.0",
        ADMIN,
    )


def test_failed_delivery_is_tried_three_times_and_dropped_deliveries_never_arrive(
    harbor: RunningHarbor, admin: requests.Session
) -> None:
    failing = Receiver(status=500)
    try:
        harbor.emulator.state.add_project("flaky")
        target = {"type": "http", "address": failing.url, "payload_format": "Default"}
        add_policy(admin, harbor, "flaky", target)
        push_image(harbor.url, "flaky/app", "1", session=admin)
        (delivery,) = harbor.emulator.wait_for_deliveries(1)
        assert (delivery.attempts, delivery.status, len(failing.requests)) == (3, 500, 3)
        assert "Authorization" not in failing.requests[0][0]

        harbor.emulator.drop_deliveries = True
        push_image(harbor.url, "flaky/app", "2", session=admin)
        dropped = harbor.emulator.wait_for_deliveries(2)[1]
        assert dropped.dropped
        assert len(failing.requests) == 3
    finally:
        failing.stop()


def test_manifest_delete_removes_the_artifact_and_fires_delete_artifact(
    harbor: RunningHarbor, admin: requests.Session, receiver: Receiver
) -> None:
    harbor.emulator.state.add_project("gone")
    policy = {
        "name": "deletes",
        "enabled": True,
        "event_types": ["DELETE_ARTIFACT"],
        "targets": [{"type": "http", "address": receiver.url}],
    }
    assert (
        admin.post(api(harbor, "/projects/gone/webhook/policies"), json=policy).status_code == 201
    )
    image = push_image(harbor.url, "gone/app", "0.9", session=admin)
    deleted = admin.delete(f"{harbor.url}/v2/gone/app/manifests/{image.digest}", timeout=10)
    assert deleted.status_code == 202
    assert admin.get(api(harbor, "/projects/gone/repositories/app/artifacts")).json() == []
    (delivery,) = harbor.emulator.wait_for_deliveries(1)
    assert delivery.event_type == "DELETE_ARTIFACT"
    parsed = parse_webhook(receiver.requests[0][1], "application/json", {})
    assert isinstance(parsed, ArtifactEvents)
    assert (parsed.events[0].kind, parsed.events[0].tag) == ("deleted", "0.9")


def test_acceld_registry_client_pushes_a_referrer_through_the_token_flow(
    harbor: RunningHarbor, admin: requests.Session
) -> None:
    from harbor_api.credentials import Credentials
    from harbor_api.oci import Descriptor, Manifest, parse_manifest
    from harbor_api.registry import RegistryClient
    from harbor_api.transport import TlsOptions

    state = harbor.emulator.state
    state.add_project("apps")
    robot = state.add_robot(
        "acceld", "pw", [("repository", "pull"), ("repository", "push")], "apps"
    )
    original = push_image(harbor.url, "apps/web", "1", session=admin)
    client = RegistryClient(
        harbor.host, credentials=Credentials(robot, "pw"), tls=TlsOptions(plain_http=True)
    )
    fetched = client.get_manifest("apps/web", "1")
    source = parse_manifest(fetched.raw)
    subject = Descriptor(fetched.media_type, fetched.digest, len(fetched.raw))
    copy = Manifest(config=source.config, layers=source.layers, subject=subject)
    pushed = client.put_manifest("apps/web", "1-esgz", copy.encode())
    assert pushed.oci_subject == original.digest
    assert [d.digest for d in client.referrers("apps/web", original.digest)] == [pushed.digest]
    assert harbor.emulator.calls["token"] >= 1


def test_deleting_an_artifact_deletes_its_accessories_and_untagged_children_as_harbor_does(
    harbor: RunningHarbor, admin: requests.Session
) -> None:
    harbor.emulator.state.add_project("cas")
    url, repository = harbor.url, "cas/app"
    signature_type = "application/vnd.dev.cosign.artifact.sig.v1+json"

    def accessory(subject: Any) -> Any:
        return push_artifact(
            url,
            repository,
            "",
            signature_type,
            "application/octet-stream",
            b"sig",
            subject=subject_of(subject),
            session=admin,
        )

    image = push_image(url, repository, "1.0", session=admin)
    signature = accessory(image)
    countersignature = accessory(signature)
    index, children = push_index(
        url, repository, "multi", ["linux/amd64", "linux/arm64/v8"], session=admin
    )
    child_signature = accessory(children[0])
    tagged = children[1]
    assert (
        push_manifest(
            url, repository, "arm", json.dumps(tagged.manifest).encode(), tagged.media_type, admin
        )
        == tagged.digest
    )
    kept = push_image(url, repository, "2.0", [[Entry("k", data=b"kept")]], session=admin)
    kept_signature = accessory(kept)
    artifacts = api(harbor, "/projects/cas/repositories/app/artifacts")

    refused = admin.delete(f"{artifacts}/{children[0].digest}", timeout=10)
    assert refused.status_code == 412
    assert refused.json()["errors"][0]["code"] == "VIOLATE_FOREIGN_KEY_CONSTRAINT"
    assert admin.delete(f"{artifacts}/1.0", timeout=30).status_code == 200
    assert admin.delete(f"{artifacts}/{index.digest}", timeout=30).status_code == 200
    assert admin.delete(f"{artifacts}/{index.digest}", timeout=10).status_code == 404

    state = harbor.emulator.state
    assert {r.digest for r in state.in_repository(repository)} == {
        kept.digest,
        kept_signature.digest,
        tagged.digest,
    }
    upstream = harbor.emulator.registry_url
    accept = {"Accept": f"{OCI_MANIFEST},application/vnd.oci.image.index.v1+json"}

    def status(digest: str) -> int:
        answer = requests.head(
            f"{upstream}/v2/{repository}/manifests/{digest}", headers=accept, timeout=10
        )
        return answer.status_code

    for gone in (image, signature, countersignature, index, children[0], child_signature):
        assert status(gone.digest) == 404
    for stays in (kept, kept_signature, tagged):
        assert status(stays.digest) == 200
    tags = requests.get(f"{upstream}/v2/{repository}/tags/list", timeout=10).json()["tags"]
    assert sorted(tags) == ["2.0", "arm"]
