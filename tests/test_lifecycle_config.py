"""The lifecycle settings: `prune.interval`, `prune.unwanted`, `state.cache_ttl` in the config
and a policy's `reconvert`; good values are read, and each bad one is refused naming the file,
the field and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.load import PolicyError, parse_policies
from policies.model import Reconvert, ReconvertMode
from reconciler.config import ConfigError, PruneConfig, load_config

CONFIG = """\
source:
  kind: registry
  url: registry.test
policies:
  - name: all
    formats: [estargz]
"""
DAY = 24 * 3600


def _config(tmp_path: Path, settings: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.replace("policies:", settings + "policies:", 1))
    return path


@pytest.mark.parametrize(
    ("settings", "prune", "cache_ttl"),
    [
        ("", PruneConfig(None, unwanted=False), 30 * DAY),
        ("prune: {}\n", PruneConfig(None, unwanted=False), 30 * DAY),
        ("prune:\n  interval: 1h\n", PruneConfig(3600, unwanted=False), 30 * DAY),
        ("prune:\n  interval: 90s\n  unwanted: true\n", PruneConfig(90, unwanted=True), 30 * DAY),
        ("prune:\n  interval: 1h30m\n  unwanted: false\n", PruneConfig(5400, False), 30 * DAY),
        ("state:\n  cache_ttl: 7d\n", PruneConfig(None, unwanted=False), 7 * DAY),
        ("state:\n  cache_ttl: 36h\n", PruneConfig(None, unwanted=False), 36 * 3600),
    ],
)
def test_prune_and_cache_ttl_settings_are_read(
    tmp_path: Path, settings: str, prune: PruneConfig, cache_ttl: int
) -> None:
    config = load_config(_config(tmp_path, settings), {})
    assert config.prune == prune
    assert config.cache_ttl_seconds == cache_ttl


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            "prune:\n  interval: 0\n",
            "prune.interval: must be longer than 0s (leave it out: never)",
        ),
        (
            "prune:\n  interval: -5m\n",
            "prune.interval: expected a duration like 90s, 5m, 6h or 1h30m, got '-5m'",
        ),
        (
            "prune:\n  interval: 5 minutes\n",
            "prune.interval: expected a duration like 90s, 5m, 6h or 1h30m, got '5 minutes'",
        ),
        (
            "prune:\n  unwanted: yes please\n",
            'prune.unwanted: expected true or false, got "yes please"',
        ),
        ("prune:\n  unwanted: 1\n", "prune.unwanted: expected true or false, got 1"),
        (
            "prune:\n  intervall: 1h\n",
            'prune.intervall: unknown key (did you mean "interval"?)',
        ),
        ("prune: 1h\n", 'prune: expected a mapping, got "1h"'),
        ("state:\n  cache_ttl: 0\n", "state.cache_ttl: must be longer than 0s"),
        (
            "state:\n  cache_ttl: 30 days\n",
            "state.cache_ttl: expected a duration like 90s, 5m, 6h or 1h30m, got '30 days'",
        ),
    ],
)
def test_bad_prune_and_cache_ttl_settings_are_refused_naming_the_field(
    tmp_path: Path, settings: str, message: str
) -> None:
    path = _config(tmp_path, settings)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert str(caught.value) == f"{path}: {message}"


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        (None, Reconvert()),
        ("never", Reconvert(ReconvertMode.NEVER)),
        ("options-changed", Reconvert(ReconvertMode.OPTIONS_CHANGED)),
        ("driver-older-than 0.2.0", Reconvert(ReconvertMode.DRIVER_OLDER_THAN, "0.2.0")),
        ("driver-older-than v1.4", Reconvert(ReconvertMode.DRIVER_OLDER_THAN, "v1.4")),
        ("  options-changed  ", Reconvert(ReconvertMode.OPTIONS_CHANGED)),
    ],
)
def test_a_policys_reconvert_rule_is_read(text: str | None, rule: Reconvert) -> None:
    policy = {"name": "web", "formats": ["estargz"]}
    if text is not None:
        policy["reconvert"] = text
    (loaded,) = parse_policies([policy], "config.yaml")
    assert loaded.reconvert == rule
    assert Reconvert.parse(str(rule)) == rule


MODES = '"never", "options-changed", "driver-older-than"'


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("always", f'expected one of {MODES} (with a version), got "always"'),
        ("Never", f'expected one of {MODES} (with a version), got "Never"'),
        ("", f'expected one of {MODES} (with a version), got ""'),
        (3, "expected a string, got 3"),
        (
            "driver-older-than",
            'expected "driver-older-than VERSION" (e.g. 0.2.0), got "driver-older-than"',
        ),
        (
            "driver-older-than latest",
            'expected "driver-older-than VERSION" (e.g. 0.2.0), got "driver-older-than latest"',
        ),
        (
            "driver-older-than 0.2.0 0.3.0",
            'expected "driver-older-than VERSION" (e.g. 0.2.0), '
            'got "driver-older-than 0.2.0 0.3.0"',
        ),
        (
            "options-changed 1",
            '"options-changed" takes no argument, got "options-changed 1"',
        ),
    ],
)
def test_a_bad_reconvert_rule_is_refused_naming_policy_and_field(
    value: object, message: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policies(
            [
                {"name": "web", "formats": ["estargz"]},
                {"name": "db", "formats": ["nydus"], "reconvert": value},
            ],
            "config.yaml",
        )
    assert str(caught.value) == f'config.yaml: policies[1] "db": reconvert: {message}'
