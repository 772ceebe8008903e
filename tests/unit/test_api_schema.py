"""The OpenAPI schema states every limit the API enforces on what a client sends.

A client (or a generated one) validates against the schema; what it lets
through must be what the API accepts. tests/e2e/test_bad_input.py sends what
the schema refuses and sees it refused; this checks the schema leaves nothing
unbounded to begin with.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from api.app import create_app
from settings import Settings

# Protobuf's JSON mapping checks each of the codec's payloads; the schema
# leaves them open as the Web UI's to define.
OPEN_OBJECTS = {"CodecPayloads.payloads[]"}
# An order id the API never issued is not found (404), whatever it is.
UNBOUNDED_PATH_STRINGS = {"order_id"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return create_app(Settings()).openapi()


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        return name, spec["components"]["schemas"][name]
    return "", schema


def _walk(spec: dict[str, Any], schema: dict[str, Any], where: str) -> Iterator[tuple[str, Any]]:
    """(where, schema) of every schema a request body can hold, refs followed."""
    name, schema = _resolve(spec, schema)
    where = name or where
    yield where, schema
    for arm in schema.get("anyOf", []):
        yield from _walk(spec, arm, where)
    for key, prop in schema.get("properties", {}).items():
        yield from _walk(spec, prop, f"{where}.{key}")
    if "items" in schema:
        yield from _walk(spec, schema["items"], f"{where}[]")


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            yield f"{method.upper()} {path}", operation


def _body_schemas(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for _, operation in _operations(spec):
        for content in operation.get("requestBody", {}).get("content", {}).values():
            yield from _walk(spec, content["schema"], "body")


def _parameters(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for operation_name, operation in _operations(spec):
        for parameter in operation.get("parameters", []):
            for _, schema in _walk(spec, parameter["schema"], parameter["name"]):
                yield f"{operation_name} {parameter['name']}", parameter, schema


def test_every_request_body_object_refuses_unknown_properties(spec):
    objects = [(where, s) for where, s in _body_schemas(spec) if s.get("type") == "object"]

    open_ = {where for where, s in objects if s.get("additionalProperties") is not False}

    assert len(objects) >= 5
    assert open_ == OPEN_OBJECTS


def test_every_integer_a_client_sends_is_bounded_below_and_above(spec):
    integers = [(where, s) for where, s in _body_schemas(spec) if s.get("type") == "integer"]
    integers += [(where, s) for where, _, s in _parameters(spec) if s.get("type") == "integer"]

    unbounded = [where for where, s in integers if "minimum" not in s or "maximum" not in s]

    assert len(integers) >= 4
    assert unbounded == []


def test_every_string_a_client_sends_has_a_length_limit(spec):
    strings = [(where, s) for where, s in _body_schemas(spec) if s.get("type") == "string"]
    strings += [
        (where, s)
        for where, parameter, s in _parameters(spec)
        if s.get("type") == "string" and parameter["name"] not in UNBOUNDED_PATH_STRINGS
    ]

    unbounded = [
        where
        for where, s in strings
        if "maxLength" not in s and "enum" not in s and "format" not in s
    ]

    assert len(strings) >= 8
    assert unbounded == []


def test_every_time_a_client_sends_is_rfc3339_with_an_offset(spec):
    times = [where for where, _, s in _parameters(spec) if s.get("format") == "date-time"]
    times += [where for where, s in _body_schemas(spec) if s.get("format") == "date-time"]
    spelled = {s.get("pattern") for _, _, s in _parameters(spec) if s.get("format") == "date-time"}

    assert times == ["GET /wallets/{customer_id} at"]
    assert spelled == {
        r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$"
    }
