import shutil
from pathlib import Path

import pytest

from harbor_api.transport import TlsOptions
from reconciler.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    HarborSettings,
    RegistrySettings,
    config_path,
    load_config,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "config.yaml"
ROBOT_SECRET = "Zq7-robot-secret-value"

HARBOR = """\
source:
  kind: harbor
  url: https://harbor.test
  username: robot$acceld
  password_file: robot.secret
policies:
  - name: all
    formats: [estargz]
"""


def _write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    (tmp_path / "robot.secret").write_text(ROBOT_SECRET + "\n")
    return path


def _error(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env or {})
    message = str(caught.value)
    assert ROBOT_SECRET not in message
    return message


def test_a_minimal_harbor_config_gets_the_documented_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, HARBOR), {})
    assert isinstance(config.source, HarborSettings)
    assert config.source.url == "https://harbor.test"
    assert config.source.registry_host == "harbor.test"
    assert config.source.credentials.username == "robot$acceld"
    assert config.source.credentials.password == ROBOT_SECRET
    assert config.source.tls == TlsOptions()
    assert config.state_dir == Path("/var/lib/acceld")
    assert config.work_dir == Path("/var/lib/acceld/work")
    assert config.work_dir_budget_bytes == 20 * 1024**3
    assert config.workers == 2
    assert config.scan.full_interval_seconds == 6 * 3600
    assert config.scan.incremental_interval_seconds == 300
    assert (config.server.listen_host, config.server.listen_port) == ("127.0.0.1", 8080)
    assert config.server.webhook_secret is None
    assert [p.name for p in config.policies] == ["all"]
    assert config.path == tmp_path / "config.yaml"


def test_the_commented_example_loads(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "config.yaml")
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "harbor-robot").write_text(ROBOT_SECRET)
    (tmp_path / "creds" / "webhook-secret").write_text("Bearer hook\n")
    config = load_config(
        tmp_path / "config.yaml", {"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")}
    )
    assert config.server.webhook_secret is not None
    assert config.server.webhook_secret.reveal() == "Bearer hook"
    assert config.server.external_url == "https://acceld.example.com"
    assert config.limits.max_uncompressed_size == 64 * 1024**3
    assert [p.name for p in config.policies] == ["library", "team-web"]


def test_secrets_never_show_in_reprs(tmp_path: Path) -> None:
    text = HARBOR + "server:\n  webhook_secret_env: HOOK\n"
    config = load_config(_write(tmp_path, text), {"HOOK": "hook-value-123"})
    assert ROBOT_SECRET not in repr(config)
    assert "hook-value-123" not in repr(config)
    assert str(config.server.webhook_secret) == "***"
    assert config.server.webhook_secret is not None
    assert config.server.webhook_secret.reveal() == "hook-value-123"


def test_an_empty_value_takes_the_default(tmp_path: Path) -> None:
    text = HARBOR + "scan:\n  full_interval:\n  safety_margin: 0\nworkers:\n"
    config = load_config(_write(tmp_path, text), {})
    assert config.scan.full_interval_seconds == 6 * 3600
    assert config.scan.safety_margin_seconds == 0
    assert config.workers == 2


def test_a_registry_source_with_plain_http_and_password_env(tmp_path: Path) -> None:
    text = """\
source:
  kind: registry
  url: 127.0.0.1:5000
  plain_http: true
  username: ci
  password_env: REG_PASS
state_dir: state
policies: []
"""
    config = load_config(_write(tmp_path, text), {"REG_PASS": "pw"})
    assert isinstance(config.source, RegistrySettings)
    assert config.source.host == "127.0.0.1:5000"
    assert config.source.tls.plain_http
    assert config.source.credentials is not None
    assert config.source.credentials.password == "pw"
    assert config.state_dir == tmp_path / "state"
    assert config.work_dir == tmp_path / "state" / "work"


def test_registry_credentials_from_a_docker_config(tmp_path: Path) -> None:
    (tmp_path / "docker.json").write_text(
        '{"auths": {"127.0.0.1:5000": {"username": "ci", "password": "pw"}}}'
    )
    text = (
        "source:\n  kind: registry\n  url: 127.0.0.1:5000\n  docker_config: docker.json\n"
        "policies: []\n"
    )
    config = load_config(_write(tmp_path, text), {})
    assert config.source.credentials is not None
    assert config.source.credentials.username == "ci"


def test_a_systemd_credential_is_read_from_the_credentials_directory(tmp_path: Path) -> None:
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "robot").write_text("from-systemd\n")
    text = HARBOR.replace("password_file: robot.secret", "password_credential: robot")
    config = load_config(_write(tmp_path, text), {"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")})
    assert isinstance(config.source, HarborSettings)
    assert config.source.credentials.password == "from-systemd"


def test_policies_from_a_file_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "policies.yaml").write_text("policies:\n  - name: web\n    formats: [estargz]\n")
    text = HARBOR.split("policies:")[0] + "policies_file: policies.yaml\n"
    config = load_config(_write(tmp_path, text), {})
    assert [p.name for p in config.policies] == ["web"]


def test_errors_in_a_policies_file_name_that_file(tmp_path: Path) -> None:
    (tmp_path / "policies.yaml").write_text(
        "policies:\n  - name: web\n    formats: [zstd-chunked]\n"
    )
    text = HARBOR.split("policies:")[0] + "policies_file: policies.yaml\n"
    assert _error(_write(tmp_path, text)) == (
        f'{tmp_path}/policies.yaml: policies[0] "web": formats[0]: format "zstd-chunked" is not '
        "supported by this version"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("url: https://harbor.test", "url: harbor.test"),
            'source.url: expected http(s)://HOST[:PORT] of Harbor, got "harbor.test"',
        ),
        (
            ("kind: harbor", "kind: quay"),
            'source.kind: expected "harbor" or "registry", got "quay"',
        ),
        (
            ("password_file: robot.secret", "password: hunter2"),
            "source.password: a secret must not be written in the config file; use password_file, "
            "password_env or password_credential",
        ),
        (
            ("password_file: robot.secret", "password_file: missing.secret"),
            "source.password_file: cannot read {tmp}/missing.secret: No such file or directory",
        ),
        (
            ("password_file: robot.secret", "password_env: NOPE"),
            "source.password_env: environment variable NOPE is not set or empty",
        ),
        (
            ("password_file: robot.secret", "password_credential: robot"),
            "source.password_credential: credential robot not found: CREDENTIALS_DIRECTORY is "
            "not set and neither /etc/credstore/robot nor /etc/credstore/acceld.robot exists "
            "(run under systemd with LoadCredential=, or pass --credentials-dir DIR)",
        ),
        (
            ("password_file: robot.secret", "password_file: robot.secret\n  password_env: X"),
            "source: password_file and password_env are both set; use one",
        ),
        (
            ("password_file: robot.secret", "insecure: true"),
            "source: password_file, password_env or password_credential is required",
        ),
        (
            ("username: robot$acceld", "user: robot$acceld"),
            'source.username: required (is "user" a misspelling of it?)',
        ),
        (
            ("username: robot$acceld", "username: robot$acceld\n  insecur: true"),
            'source.insecur: unknown key (did you mean "insecure"?)',
        ),
        (("policies:", "workers: 0\npolicies:"), "workers: expected 1 to 64, got 0"),
        (
            ("policies:", "work_dir_budget: 20\npolicies:"),
            "work_dir_budget: expected a size like 512MiB or 20GiB, got 20",
        ),
        (
            ("policies:", "scan:\n  full_interval: 6 hours\npolicies:"),
            "scan.full_interval: expected a duration like 90s, 5m, 6h or 1h30m, got '6 hours'",
        ),
        (
            ("policies:", "scan:\n  incremental_interval: 0\npolicies:"),
            "scan.incremental_interval: must be longer than 0s",
        ),
        (
            ("policies:", "server:\n  listen: 8080\npolicies:"),
            "server.listen: expected a string, got 8080",
        ),
        (
            ("policies:", "server:\n  listen: localhost:99999\npolicies:"),
            'server.listen: expected HOST:PORT or [IPV6]:PORT, got "localhost:99999"',
        ),
        (
            ("policies:", "server:\n  tls_cert: a.pem\npolicies:"),
            "server: tls_cert and tls_key go together; set both or neither",
        ),
        (
            ("policies:", "server:\n  webhook_secret: s\npolicies:"),
            "server.webhook_secret: a secret must not be written in the config file; use "
            "webhook_secret_file, webhook_secret_env or webhook_secret_credential",
        ),
        (
            ("policies:", "limits:\n  max_ratio: 5\npolicies:"),
            'limits.max_ratio: unknown key (did you mean "max_entries"?)',
        ),
        (
            ("policies:", "polices: []\npolicies:"),
            'polices: unknown key (did you mean "policies"?)',
        ),
        (
            ("policies:", "policies_file: p.yaml\npolicies:"),
            "set exactly one of policies and policies_file",
        ),
        (
            ("policies:", "workers: 2\nworkers: 3\npolicies:"),
            "not valid YAML: line 7, column 1: duplicate key 'workers'",
        ),
    ],
)
def test_invalid_configs_are_rejected_naming_file_and_field(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    path = _write(tmp_path, HARBOR.replace(*change, 1))
    assert _error(path) == f"{path}: " + message.format(tmp=tmp_path)


def test_an_invalid_policy_error_names_the_config_file(tmp_path: Path) -> None:
    text = HARBOR + "  - name: web\n    formats: [estargz]\n    tags: ['[v*']\n"
    path = _write(tmp_path, text)
    assert _error(path) == f'{path}: policies[1] "web": tags[0]: invalid glob "[v*": missing "]"'


def test_a_yaml_syntax_error_shows_position_but_not_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, HARBOR + f"x: [{ROBOT_SECRET}\n")
    message = _error(path)
    assert message.startswith(f"{path}: not valid YAML: line ")


def test_a_missing_or_empty_file_is_a_clear_error(tmp_path: Path) -> None:
    assert _error(tmp_path / "nope.yaml") == (
        f"{tmp_path}/nope.yaml: cannot read: No such file or directory"
    )
    assert _error(_write(tmp_path, "")) == f"{tmp_path}/config.yaml: the file is empty"


def test_config_path_prefers_the_option_then_the_environment(tmp_path: Path) -> None:
    assert config_path(tmp_path / "a.yaml", {"ACCELD_CONFIG": "/b.yaml"}) == tmp_path / "a.yaml"
    assert config_path(None, {"ACCELD_CONFIG": "/b.yaml"}) == Path("/b.yaml")
    assert config_path(None, {}) == DEFAULT_CONFIG_PATH


def test_load_config_reads_acceld_config_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, HARBOR)
    monkeypatch.setenv("ACCELD_CONFIG", str(path))
    assert load_config(None).path == path


def test_a_ca_bundle_must_exist_and_is_resolved_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("pem")
    path = _write(tmp_path, HARBOR.replace("  username:", "  ca_bundle: ca.pem\n  username:"))
    config = load_config(path, {})
    assert config.source.tls.ca_bundle == str(tmp_path / "ca.pem")
    path = _write(tmp_path, HARBOR.replace("  username:", "  ca_bundle: no.pem\n  username:"))
    assert _error(path) == f"{path}: source.ca_bundle: {tmp_path}/no.pem is not a file"
