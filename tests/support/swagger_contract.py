"""Harbor's swagger.yaml as a checker: does a request match an operation, does an answer match
its schema. Swagger 2.0: `basePath`, `parameters` and `responses` by `$ref`, schemas under
`definitions`, validated as JSON Schema draft 4."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from tests.conftest import SWAGGER
from tests.support.harbor_emulator import Exchange, RunningHarbor, start_harbor_emulator


@dataclass(frozen=True)
class Operation:
    method: str
    template: tuple[str, ...]
    spec: Mapping[str, Any]
    parameters: tuple[Mapping[str, Any], ...]

    @property
    def name(self) -> str:
        return str(self.spec.get("operationId", "/".join(self.template)))


class SwaggerContract:
    def __init__(self, path: Path) -> None:
        with path.open() as handle:
            self.document: dict[str, Any] = yaml.safe_load(handle)
        self.base_path = self.document.get("basePath", "")
        self._registry: Registry[Any] = Registry().with_resource(
            "urn:harbor-swagger", Resource.from_contents(self.document, DRAFT4)
        )
        self.operations: list[Operation] = []
        self._validators: dict[tuple[str, int], jsonschema.Draft4Validator] = {}
        for template, item in self.document["paths"].items():
            shared = [self._resolve(p) for p in item.get("parameters", [])]
            for method, spec in item.items():
                if method == "parameters":
                    continue
                own = [self._resolve(p) for p in spec.get("parameters", [])]
                self.operations.append(
                    Operation(
                        method.upper(),
                        tuple(template.strip("/").split("/")),
                        spec,
                        tuple(shared + own),
                    )
                )

    def _resolve(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = node.get("$ref")
        if not ref:
            return node
        target: Any = self.document
        for part in ref.lstrip("#/").split("/"):
            target = target[part]
        return self._resolve(target)

    def operation(self, method: str, raw_path: str) -> tuple[Operation, dict[str, str]]:
        """The operation a raw (still encoded) request path selects, with its path values."""
        if not raw_path.startswith(self.base_path + "/"):
            raise AssertionError(f"{raw_path}: not under the API base path {self.base_path}")
        segments = tuple(raw_path[len(self.base_path) :].strip("/").split("/"))
        best: tuple[int, Operation, dict[str, str]] | None = None
        for op in self.operations:
            if op.method != method or len(op.template) != len(segments):
                continue
            values: dict[str, str] = {}
            literal = 0
            for want, got in zip(op.template, segments, strict=True):
                if want.startswith("{"):
                    values[want[1:-1]] = got
                elif want == got:
                    literal += 1
                else:
                    break
            else:
                if best is None or literal > best[0]:
                    best = (literal, op, values)
        if best is None:
            raise AssertionError(f"{method} {raw_path}: no operation in swagger.yaml")
        return best[1], best[2]

    def request_problems(
        self,
        method: str,
        raw_path: str,
        query: Iterable[tuple[str, str]],
        headers: Mapping[str, str],
    ) -> list[str]:
        """Why a request does not match swagger.yaml (empty when it does)."""
        try:
            op, path_values = self.operation(method, raw_path)
        except AssertionError as exc:
            return [str(exc)]
        problems = []
        declared = {(p["in"], p["name"]): p for p in op.parameters}
        for name, value in path_values.items():
            if not value:
                problems.append(f"{op.name}: path parameter {name} is empty")
        for name, value in query:
            spec = declared.get(("query", name))
            if spec is None:
                problems.append(f"{op.name}: query parameter {name!r} is not declared")
                continue
            problems.extend(f"{op.name}: query {name}: {p}" for p in _value_problems(spec, value))
        lowered = {k.lower(): v for k, v in headers.items()}
        for (where, name), spec in declared.items():
            if where == "header" and name.lower() in lowered:
                problems.extend(
                    f"{op.name}: header {name}: {p}"
                    for p in _value_problems(spec, lowered[name.lower()])
                )
            if where == "query" and spec.get("required") and name not in dict(query):
                problems.append(f"{op.name}: required query parameter {name} missing")
        return problems

    def response_problems(self, method: str, raw_path: str, status: int, body: Any) -> list[str]:
        """Why an answer does not match its operation's schema (empty when it does)."""
        try:
            op, _ = self.operation(method, raw_path)
        except AssertionError as exc:
            return [str(exc)] if status != 404 else []
        responses = op.spec.get("responses", {})
        declared = responses.get(str(status)) or responses.get("default")
        if declared is None:
            if status < 400:
                return [f"{op.name}: status {status} is not declared"]
            # Harbor answers undeclared errors (e.g. 422 from validation) in its error format.
            declared = {"schema": {"$ref": "#/definitions/Errors"}}
        schema = self._resolve(declared).get("schema")
        if schema is None:
            return [] if body in (None, "") else [f"{op.name}: {status} declares no body"]
        key = (op.name, status)
        validator = self._validators.get(key)
        if validator is None:
            validator = jsonschema.Draft4Validator(_retarget_refs(schema), registry=self._registry)
            self._validators[key] = validator
        return [
            f"{op.name} {status}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(body)
        ]

    def exchange_problems(self, exchanges: Iterable[Exchange]) -> list[str]:
        problems = []
        for exchange in exchanges:
            where = f"{exchange.method} {exchange.raw_path}"
            problems.extend(
                f"{where}: request: {p}"
                for p in self.request_problems(
                    exchange.method, exchange.raw_path, exchange.query, exchange.headers
                )
                if exchange.status < 400
            )
            problems.extend(
                f"{where}: response: {p}"
                for p in self.response_problems(
                    exchange.method, exchange.raw_path, exchange.status, exchange.body
                )
            )
        return problems


def _retarget_refs(node: Any) -> Any:
    """A copy of an inline schema whose `#/definitions/…` refs point into the registry."""
    if isinstance(node, dict):
        return {
            k: ("urn:harbor-swagger" + v if k == "$ref" else _retarget_refs(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_retarget_refs(v) for v in node]
    return node


def _value_problems(spec: Mapping[str, Any], value: str) -> list[str]:
    kind = spec.get("type", "string")
    if kind == "integer":
        try:
            number = int(value)
        except ValueError:
            return [f"expected an integer, got {value!r}"]
        if "maximum" in spec and number > spec["maximum"]:
            return [f"{number} is above the maximum {spec['maximum']}"]
        if "minimum" in spec and number < spec["minimum"]:
            return [f"{number} is below the minimum {spec['minimum']}"]
    elif kind == "boolean" and value not in ("true", "false"):
        return [f"expected true or false, got {value!r}"]
    elif kind == "string" and len(value) < spec.get("minLength", 0):
        return [f"shorter than {spec['minLength']}"]
    return []


@functools.cache
def load_contract(path: Path) -> SwaggerContract:
    return SwaggerContract(path)


@contextlib.contextmanager
def contract_checked_harbor(registry_url: str) -> Iterator[RunningHarbor]:
    """A Harbor emulator whose every REST exchange is checked against swagger.yaml on exit
    (when the file is there; `tests/test_harbor_contract.py` says so when it is not)."""
    running = start_harbor_emulator(registry_url)
    try:
        yield running
    finally:
        running.stop()
    if SWAGGER.exists():
        problems = load_contract(SWAGGER).exchange_problems(running.emulator.exchanges)
        assert not problems, "emulator or client left swagger.yaml:\n" + "\n".join(problems)
