"""The secret scanner finds every form a secret leaks in, and nothing else."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from urllib.parse import quote, quote_plus

import pytest

from tests.support.secret_scan import (
    command_line,
    find_secrets,
    find_secrets_in_command_line,
)

SECRET = "Robot-S3cret/+=&value"


@pytest.mark.parametrize(
    "leak",
    [
        f"password={SECRET}",
        json.dumps({"error": f"bad password {SECRET}"}),
        f"GET /token?password={quote(SECRET, safe='')}",
        f"body: password={quote_plus(SECRET)}",
        "Authorization: Basic " + base64.b64encode(f"robot$acceld:{SECRET}".encode()).decode(),
        "auth=" + base64.b64encode(f"u:{SECRET}".encode()).decode(),
        "auth=" + base64.b64encode(f"ab:{SECRET}".encode()).decode(),
        "jwt." + base64.urlsafe_b64encode(f'{{"p":"{SECRET}"}}'.encode()).decode() + ".sig",
    ],
    ids=[
        "plain",
        "json",
        "url-encoded",
        "form-encoded",
        "basic-auth",
        "base64-after-2-bytes",
        "base64-after-3-bytes",
        "urlsafe-base64",
    ],
)
def test_a_secret_is_found_in_every_form_it_leaks_in(leak: str) -> None:
    hits = find_secrets({"log": f"event=push {leak} result=ok"}, [SECRET])
    assert hits, leak
    assert all(hit.source == "log" for hit in hits)


def test_texts_without_the_secret_give_no_hit() -> None:
    texts = {
        "log": "event=push user=robot$acceld password=*** result=ok",
        "metrics": 'acceld_webhook_requests_total{result="accepted"} 3',
        "near miss": SECRET[:-1] + "X",
    }
    assert find_secrets(texts, [SECRET]) == []


def test_each_hit_names_its_source_and_form() -> None:
    texts = {"stderr": f"x {SECRET}", "repr": "Credentials(password='***')"}
    (hit,) = find_secrets(texts, [SECRET])
    assert (hit.source, hit.form, hit.offset) == ("stderr", "as is", 2)
    assert str(hit) == "stderr: a secret, as is, at offset 2"


def test_a_short_secret_is_refused_rather_than_matched_everywhere() -> None:
    with pytest.raises(ValueError, match="at least 6 are needed"):
        find_secrets({"log": "abc"}, ["abc"])


def test_command_line_secrets_are_found_and_the_environment_is_not_read() -> None:
    env_secret = "only-in-the-environment-42"
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", f"--password={SECRET}"],
        env={"ACCELD_REGISTRY_PASSWORD": env_secret},
    )
    try:
        assert command_line(child.pid)[-1] == f"--password={SECRET}"
        (hit,) = find_secrets_in_command_line(child.pid, [SECRET, env_secret])
        assert hit.source == f"argv[3] of pid {child.pid}"
    finally:
        child.kill()
        child.wait(timeout=10)
