"""The acceld config file: one YAML document, validated whole before anything starts.

Found at `--config`, else `$ACCELD_CONFIG`, else `/etc/acceld/config.yaml`. Relative paths in
it (`state_dir`, `ca_bundle`, `policies_file`, secret files) are relative to the file itself.
Every error names the file and the field (`config.yaml: server.listen: …`), unknown keys are
errors, and secrets come from files or the environment only (see `reconciler.secrets`).
`examples/config.yaml` shows every key.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from converters.limits import LayerLimits
from harbor_api.credentials import Credentials, CredentialsError, credentials_from_docker_config
from harbor_api.errors import AcceldError
from harbor_api.origins import refuse_userinfo
from harbor_api.transport import TlsOptions
from policies.fields import FieldError, Fields
from policies.load import PolicyError, parse_policies
from policies.model import Policy
from reconciler.controller.retention import DEFAULT_CACHE_TTL_SECONDS
from reconciler.observability.logs import register_secret
from reconciler.secrets import Secret, read_secret
from reconciler.state_config import StateSettings, parse_state

ENV_CONFIG = "ACCELD_CONFIG"
DEFAULT_CONFIG_PATH = Path("/etc/acceld/config.yaml")
DEFAULT_STATE_DIR = "/var/lib/acceld"

ConversionLimits = LayerLimits

log = logging.getLogger(__name__)

_HOST_PORT = re.compile(
    r"^(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>\d+)$"
)
_REGISTRY_HOST = re.compile(r"^[A-Za-z0-9.-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$")


class ConfigError(AcceldError):
    """A config that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class HarborSettings:
    """Harbor's REST API for discovery, its `/v2/` registry for content, one robot for both."""

    url: str
    credentials: Credentials
    tls: TlsOptions

    @property
    def registry_host(self) -> str:
        return urlsplit(self.url).netloc


@dataclass(frozen=True)
class RegistrySettings:
    """A plain OCI registry: repositories are found through its catalog and tag lists."""

    host: str
    credentials: Credentials | None
    tls: TlsOptions

    @property
    def registry_host(self) -> str:
        return self.host


@dataclass(frozen=True)
class ScanConfig:
    full_interval_seconds: int = 6 * 3600
    """Between two walks over every repository."""
    incremental_interval_seconds: int = 300
    """Between two looks at what was pushed since the last scan."""
    safety_margin_seconds: int = 600
    """How far back an incremental scan reaches beyond the previous one's start."""


@dataclass(frozen=True)
class PruneConfig:
    interval_seconds: int | None = None
    """How often the daemon prunes; None (the default): never, only `acceld prune` does."""
    unwanted: bool = False
    """Scheduled prunes delete the copies no enabled policy wants too (`prune --unwanted`)."""


@dataclass(frozen=True)
class ServerConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    webhook_secret: Secret | None = None
    """The `Authorization` value Harbor sends with each webhook, compared verbatim."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    external_url: str = ""
    """The URL Harbor reaches this server at, for `acceld harbor setup`."""
    max_body_bytes: int = 1 << 20
    given: bool = False
    """Whether the file has a `server:` section: it is meant to take Harbor's webhooks."""
    metrics_listen: tuple[str, int] | None = None
    """A second listener serving only `GET /metrics`, without TLS; None: /metrics is served
    on `listen` only."""


@dataclass(frozen=True)
class Config:
    """One acceld configuration file, checked and resolved (secrets read, paths absolute)."""

    source: HarborSettings | RegistrySettings
    """Where originals are found and converted images pushed."""
    state_dir: Path
    """The state database (queue, caches, scan marks) lives here."""
    work_dir: Path
    """Layers are spooled here while they convert; each process works in an area of its own."""
    work_dir_budget_bytes: int
    """How much of `work_dir` conversions may use at once."""
    workers: int
    """Conversions running at the same time (each layer in a child process)."""
    scan: ScanConfig
    server: ServerConfig
    limits: ConversionLimits
    """Bounds a source layer must stay within; a layer beyond them is quarantined."""
    policies: tuple[Policy, ...]
    path: Path
    """The file this was loaded from (relative paths in it are resolved against its folder)."""
    state: StateSettings
    """The `state:` section: which database (by default the SQLite file in `state_dir`)."""
    prune: PruneConfig = PruneConfig()
    cache_ttl_seconds: int = DEFAULT_CACHE_TTL_SECONDS
    """`state.cache_ttl`: a converted layer not used for this long leaves the layer cache."""


def config_path(explicit: Path | None, env: Mapping[str, str] | None = None) -> Path:
    """`--config`, else `$ACCELD_CONFIG`, else the system default."""
    if explicit is not None:
        return explicit
    value = (os.environ if env is None else env).get(ENV_CONFIG, "")
    return Path(value) if value else DEFAULT_CONFIG_PATH


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> Config:
    """The validated config; raises `ConfigError` and has no effect when anything is wrong."""
    environ = os.environ if env is None else env
    path = config_path(path, environ)
    data = _read_yaml(path)
    try:
        return _parse(data, path, environ)
    except FieldError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None


def load_state_settings(path: Path | None, env: Mapping[str, str] | None = None) -> StateSettings:
    """Only where the state lives: what status, retry and migrate need. Of the secrets, only
    the state DSN is read (an operator's shell does not have the daemon's credentials)."""
    environ = os.environ if env is None else env
    path = config_path(path, environ)
    data = _read_yaml(path)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of settings")
    fields = Fields(data)
    try:
        state_dir = path.parent / fields.string("state_dir", DEFAULT_STATE_DIR)
        state_fields = fields.child("state", optional=True)
        state_fields.raw("cache_ttl")  # the daemon's; read here only so it is not unknown
        return parse_state(state_fields, environ, path.parent, state_dir)
    except FieldError as exc:
        raise ConfigError(f"{path}: {exc}") from None


class _StrictLoader(yaml.SafeLoader):
    """Refuses duplicate keys, which plain YAML loading resolves by keeping the last silently."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        # Only the problem and its position: the snippet YAML quotes may hold a secret.
        mark = exc.problem_mark
        position = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{path}: not valid YAML: {position}{exc.problem}") from None
    except yaml.YAMLError:
        raise ConfigError(f"{path}: not valid YAML") from None


def _parse(data: Any, path: Path, env: Mapping[str, str]) -> Config:
    if data is None:
        raise FieldError("", "the file is empty")
    fields = Fields(data)
    base = path.parent
    source = _source(fields.child("source"), env, base)
    state_dir = base / fields.string("state_dir", DEFAULT_STATE_DIR)
    state_fields = fields.child("state", optional=True)
    cache_ttl = _seconds(state_fields, "cache_ttl", DEFAULT_CACHE_TTL_SECONDS, positive=True)
    config = Config(
        source=source,
        state_dir=state_dir,
        work_dir=base / fields.string("work_dir", str(state_dir / "work")),
        work_dir_budget_bytes=fields.size("work_dir_budget", 20 << 30),
        workers=fields.integer("workers", 2, low=1, high=64),
        scan=_scan(fields.child("scan", optional=True)),
        server=_server(fields.child("server", optional=True), env, base),
        limits=_limits(fields.child("limits", optional=True)),
        policies=_policies(fields, path),
        path=path,
        prune=_prune(fields.child("prune", optional=True)),
        state=parse_state(state_fields, env, base, state_dir),
        cache_ttl_seconds=cache_ttl,
    )
    fields.done()
    return config


def _tls(fields: Fields, base: Path, *, plain_http: bool) -> TlsOptions:
    insecure = fields.boolean("insecure", False)
    ca_bundle = fields.string("ca_bundle", "")
    if ca_bundle:
        bundle = base / ca_bundle
        if not bundle.is_file():
            raise FieldError(fields.where("ca_bundle"), f"{bundle} is not a file")
        ca_bundle = str(bundle)
    return TlsOptions(plain_http=plain_http, insecure=insecure, ca_bundle=ca_bundle or None)


def _source(
    fields: Fields, env: Mapping[str, str], base: Path
) -> HarborSettings | RegistrySettings:
    kind = fields.string("kind")
    if kind == "harbor":
        source: HarborSettings | RegistrySettings = _harbor_source(fields, env, base)
    elif kind == "registry":
        source = _registry_source(fields, env, base)
    else:
        raise FieldError(fields.where("kind"), f'expected "harbor" or "registry", got "{kind}"')
    fields.done()
    return source


def _source_url(fields: Fields) -> str:
    """`url`, refused when it carries credentials (the error does not repeat them)."""
    url: str = fields.string("url")
    try:
        refuse_userinfo(url)
    except ValueError as exc:
        raise FieldError(fields.where("url"), str(exc)) from None
    return url


def _warn_plain_http(where: str, host: str) -> None:
    """Credentials and webhooks cross the network in clear text unless the host is this one."""
    if not is_loopback(host):
        log.warning(
            "plain http to a host that is not loopback: credentials and image content travel "
            "unencrypted",
            extra={"setting": where, "host": host},
        )


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (localhost, 127.0.0.0/8, ::1)."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _harbor_source(fields: Fields, env: Mapping[str, str], base: Path) -> HarborSettings:
    url = _source_url(fields)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise FieldError(
            fields.where("url"), f'expected http(s)://HOST[:PORT] of Harbor, got "{url}"'
        )
    username = fields.string("username")
    password = read_secret(fields, "password", env, base)
    if password is None:
        raise FieldError(
            fields.path, "password_file, password_env or password_credential is required"
        )
    tls = _tls(fields, base, plain_http=parts.scheme == "http")
    if tls.plain_http:
        _warn_plain_http(fields.where("url"), parts.hostname or "")
    return HarborSettings(
        f"{parts.scheme}://{parts.netloc}", _credentials(fields, username, password), tls
    )


def _registry_source(fields: Fields, env: Mapping[str, str], base: Path) -> RegistrySettings:
    url = _source_url(fields)
    scheme, _, host = url.rpartition("://")
    if scheme not in ("", "http", "https") or not _REGISTRY_HOST.match(host):
        raise FieldError(
            fields.where("url"),
            f"expected HOST[:PORT], http://HOST[:PORT] or https://HOST[:PORT] of the registry, "
            f'got "{url}"',
        )
    plain_http = fields.boolean("plain_http", scheme == "http")
    if scheme and plain_http != (scheme == "http"):
        raise FieldError(
            fields.where("plain_http"), f"is {str(plain_http).lower()} but url is {scheme}://"
        )
    username = fields.string("username", "")
    password = read_secret(fields, "password", env, base)
    docker_config = fields.string("docker_config", "")
    tls = _tls(fields, base, plain_http=plain_http)
    if tls.plain_http:
        _warn_plain_http(fields.where("plain_http"), host.rpartition(":")[0] or host)
    if docker_config and (username or password):
        raise FieldError(fields.path, "docker_config and username/password are both set; use one")
    if bool(username) != bool(password):
        raise FieldError(
            fields.path,
            "username needs password_file, password_env or password_credential, and they "
            "need a username",
        )
    credentials = None
    if username and password:
        credentials = _credentials(fields, username, password)
    elif docker_config:
        credentials = _docker_credentials(fields, base / docker_config, host)
    return RegistrySettings(host, credentials, tls)


def _credentials(fields: Fields, username: str, password: Secret) -> Credentials:
    try:
        return Credentials(username, password.reveal())
    except CredentialsError as exc:
        raise FieldError(fields.where("username"), str(exc)) from None


def _docker_credentials(fields: Fields, path: Path, host: str) -> Credentials:
    try:
        found = credentials_from_docker_config(path, host)
    except CredentialsError as exc:
        raise FieldError(fields.where("docker_config"), str(exc)) from None
    if found is None:
        raise FieldError(fields.where("docker_config"), f"{path} has no auths entry for {host}")
    register_secret(found.password)
    return found


def _seconds(fields: Fields, key: str, default: int, *, positive: bool) -> int:
    value = int(fields.duration(key, timedelta(seconds=default)).total_seconds())
    if positive and value <= 0:
        raise FieldError(fields.where(key), "must be longer than 0s")
    return value


def _scan(fields: Fields) -> ScanConfig:
    defaults = ScanConfig()
    scan = ScanConfig(
        full_interval_seconds=_seconds(
            fields, "full_interval", defaults.full_interval_seconds, positive=True
        ),
        incremental_interval_seconds=_seconds(
            fields, "incremental_interval", defaults.incremental_interval_seconds, positive=True
        ),
        safety_margin_seconds=_seconds(
            fields, "safety_margin", defaults.safety_margin_seconds, positive=False
        ),
    )
    fields.done()
    return scan


def _prune(fields: Fields) -> PruneConfig:
    interval = _seconds(fields, "interval", 0, positive=False)
    if fields.has("interval") and interval <= 0:
        raise FieldError(fields.where("interval"), "must be longer than 0s (leave it out: never)")
    prune = PruneConfig(interval or None, fields.boolean("unwanted", False))
    fields.done()
    return prune


def _listen(fields: Fields, key: str = "listen") -> tuple[str, int]:
    text = fields.string(key, "127.0.0.1:8080")
    match = _HOST_PORT.match(text)
    port = int(match.group("port")) if match else 0
    if match is None or not 1 <= port <= 65535:
        raise FieldError(fields.where(key), f'expected HOST:PORT or [IPV6]:PORT, got "{text}"')
    return match.group("ipv6") or match.group("host"), port


def _server(fields: Fields, env: Mapping[str, str], base: Path) -> ServerConfig:
    host, port = _listen(fields)
    external_url = fields.string("external_url", "")
    if external_url and urlsplit(external_url).scheme not in ("http", "https"):
        raise FieldError(
            fields.where("external_url"), f'expected an http(s):// URL, got "{external_url}"'
        )
    cert, key = fields.string("tls_cert", ""), fields.string("tls_key", "")
    if bool(cert) != bool(key):
        raise FieldError(fields.path, "tls_cert and tls_key go together; set both or neither")
    server = ServerConfig(
        listen_host=host,
        listen_port=port,
        webhook_secret=read_secret(fields, "webhook_secret", env, base),
        tls_cert=base / cert if cert else None,
        tls_key=base / key if key else None,
        external_url=external_url.rstrip("/"),
        max_body_bytes=fields.size("max_body_bytes", ServerConfig.max_body_bytes),
        given=bool(fields.keys()),
        metrics_listen=_listen(fields, "metrics_listen") if fields.has("metrics_listen") else None,
    )
    if server.max_body_bytes <= 0:
        raise FieldError(fields.where("max_body_bytes"), "must be larger than 0")
    fields.done()
    return server


def _limits(fields: Fields) -> ConversionLimits:
    defaults = ConversionLimits()
    try:
        limits = _limits_from(fields, defaults)
    except ValueError as exc:
        raise FieldError(fields.path, str(exc)) from None
    fields.done()
    return limits


def _limits_from(fields: Fields, defaults: ConversionLimits) -> ConversionLimits:
    return ConversionLimits(
        max_uncompressed_size=fields.size(
            "max_layer_uncompressed_size", defaults.max_uncompressed_size
        ),
        max_compression_ratio=fields.number(
            "max_compression_ratio", defaults.max_compression_ratio, low=1.0
        ),
        max_pax_header_size=fields.size("max_pax_header_size", defaults.max_pax_header_size),
        max_entries=fields.integer("max_entries", defaults.max_entries, low=1, high=1 << 40),
        max_entry_metadata=fields.size("max_entry_metadata", defaults.max_entry_metadata),
        max_layer_metadata=fields.size("max_layer_metadata", defaults.max_layer_metadata),
    )


def _policies(fields: Fields, path: Path) -> tuple[Policy, ...]:
    inline, file = fields.has("policies"), fields.has("policies_file")
    if inline == file:
        raise FieldError("", "set exactly one of policies and policies_file")
    if inline:
        return parse_policies(fields.raw("policies"), str(path))
    policies_path = path.parent / fields.string("policies_file")
    data = _read_yaml(policies_path)
    try:
        section = Fields(data)
        policies = parse_policies(section.raw("policies"), str(policies_path))
        section.done()
    except FieldError as exc:
        raise ConfigError(f"{policies_path}: {exc}") from None
    return policies
