"""The OpenAPI document says all the control API is: every route, status, code and rule.

Patterns are read here as a JSON Schema validator reads them (jsonschema_rs, ECMA-262
regular expressions, the one Schemathesis checks with), not as Python's ``re`` would.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.daemon.control_api import create_control_app
from bridge.daemon.control_schema import (
    MAX_PROVIDER_ID_LENGTH,
    PROVIDER_ID_PATTERN,
    REFUSALS,
    SHOWN_NAME_PATTERN,
    is_control,
    no_controls,
    one_segment,
)
from bridge.daemon.model import FailureCode
from bridge.daemon.openapi import BEARER_PATTERN, build_document
from tests.conftest import REPO, RunningDaemon

DOCUMENT: dict[str, Any] = json.loads(
    (REPO / "docs" / "control-api.openapi.json").read_text(encoding="utf-8")
)
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
OPERATIONS = [
    (method.upper(), path, operation)
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
    if method in METHODS
]
PROBLEM = {"$ref": "#/components/schemas/Problem"}


def test_the_committed_document_is_the_generated_one() -> None:
    assert build_document() == DOCUMENT


def test_every_route_of_the_socket_is_in_the_document_and_no_other(
    bridge: RunningDaemon,
) -> None:
    app = create_control_app(bridge.services)
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }

    assert routes == {(method, path) for method, path, _ in OPERATIONS}
    for path in (
        "/v1/checks/control-plane",
        "/v1/checks/browser",
        "/v1/checks/browser/{token}",
        "/v1/connections",
        "/v1/connections/{provider_id}",
        "/v1/openapi.json",
    ):
        assert path in DOCUMENT["paths"]


def test_operation_ids_read_as_method_names_and_keep_the_old_ones() -> None:
    ids = [operation["operationId"] for _, _, operation in OPERATIONS]

    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", name) for name in ids), ids
    assert {
        "create_login",
        "list_logins",
        "get_login",
        "cancel_login",
        "complete_callback",
        "get_status",
        "allow_loopback",
        "list_connections",
        "disconnect",
    } <= set(ids)


def test_no_operation_takes_a_token_and_every_one_may_be_refused_to_another_user() -> None:
    assert DOCUMENT["security"] == []
    for method, path, operation in OPERATIONS:
        responses = operation["responses"]
        assert "security" not in operation, (method, path)
        assert "403" in responses, (method, path)
        for status, response in responses.items():
            schema = response["content"]["application/json"]["schema"]
            if not status.startswith("2"):
                assert schema == PROBLEM, (method, path, status)


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("POST", "/v1/logins", {"201", "400", "403", "409", "413", "422", "502", "503"}),
        ("GET", "/v1/logins", {"200", "400", "403", "422"}),
        ("GET", "/v1/logins/{login_id}", {"200", "400", "403", "404", "422"}),
        ("DELETE", "/v1/logins/{login_id}", {"200", "400", "403", "404", "409"}),
        ("POST", "/v1/callbacks", {"200", "400", "403", "404", "413", "422", "503"}),
        ("GET", "/v1/status", {"200", "400", "403"}),
        (
            "POST",
            "/v1/providers/{provider_id}/allow-loopback",
            {"200", "400", "403", "404", "413", "422", "502"},
        ),
        ("GET", "/v1/connections", {"200", "400", "403", "422", "502"}),
        ("DELETE", "/v1/connections/{provider_id}", {"200", "400", "403", "404", "422", "502"}),
        ("GET", "/v1/checks/control-plane", {"200", "400", "403", "422"}),
        ("POST", "/v1/checks/browser", {"200", "400", "403"}),
        ("GET", "/v1/checks/browser/{token}", {"200", "400", "403", "404"}),
        ("GET", "/v1/openapi.json", {"200", "400", "403"}),
    ],
)
def test_each_operation_lists_the_statuses_it_answers(
    method: str, path: str, statuses: set[str]
) -> None:
    """400 for all: a request aiohttp's parser refuses (a request line over 8190 bytes)."""
    operation = DOCUMENT["paths"][path][method.lower()]

    assert set(operation["responses"]) == statuses


def test_the_refusal_codes_are_an_enum_holding_the_forwards_own() -> None:
    problem = DOCUMENT["components"]["schemas"]["Problem"]

    assert set(problem["properties"]["error"]["enum"]) == REFUSALS
    assert problem["required"] == ["error", "message"]
    forward = {
        FailureCode.CONTROL_PLANE_REJECTED,
        FailureCode.VALIDATION_ERROR,
        FailureCode.CONTROL_PLANE_ERROR,
        FailureCode.CONTROL_PLANE_UNREACHABLE,
    }
    assert {code.value for code in forward} <= REFUSALS


def test_a_wait_is_clamped_not_bounded() -> None:
    """The contract: at most 300, more is clamped. So no maximum, and the text says so."""
    parameters = DOCUMENT["paths"]["/v1/logins/{login_id}"]["get"]["parameters"]
    wait = next(p for p in parameters if p["name"] == "wait")

    assert wait["schema"] == {"type": "number", "minimum": 0}
    assert "a longer wait is clamped to 300" in wait["description"]
    waits = [
        parameter
        for _, _, operation in OPERATIONS
        for parameter in operation.get("parameters", [])
        if parameter["name"] == "wait"
    ]
    assert len(waits) == 2
    assert all("maximum" not in p["schema"] and "clamped" in p["description"] for p in waits)


def provider_id_schemas() -> list[dict[str, Any]]:
    """Every schema the document gives a provider id that the daemon reads."""
    schemas = DOCUMENT["components"]["schemas"]
    found = [
        schemas[name]["properties"]["provider_id"]
        for name in ("LoginRequest", "AgentAuthLoginRequest")
    ]
    for path, item in DOCUMENT["paths"].items():
        for parameter in item.get("parameters", []) + [
            p for method in METHODS for p in item.get(method, {}).get("parameters", [])
        ]:
            if parameter["name"] == "provider_id":
                found.append(parameter["schema"])
        if "{provider_id}" in path:
            assert any(p["name"] == "provider_id" for p in item["parameters"]), path
    return found


def test_every_provider_id_the_daemon_reads_has_the_one_segment_pattern() -> None:
    schemas = provider_id_schemas()

    assert len(schemas) == 5  # two bodies, two paths, the list's filter
    for schema in schemas:
        assert schema["pattern"] == PROVIDER_ID_PATTERN
        assert (schema["minLength"], schema["maxLength"]) == (1, MAX_PROVIDER_ID_LENGTH)


PROVIDER_ID = jsonschema_rs.validator_for(provider_id_schemas()[0])
SHOWN_NAME = jsonschema_rs.validator_for({"type": "string", "pattern": SHOWN_NAME_PATTERN})


def takes_as_provider_id(value: str) -> bool:
    try:
        one_segment(value)
    except ValueError:
        return False
    return True


def takes_as_shown_name(value: str) -> bool:
    try:
        no_controls(value)
    except ValueError:
        return False
    return True


def test_the_patterns_say_what_the_validators_do_for_every_character() -> None:
    for code in range(0x10000):
        character = chr(code)
        if 0xD800 <= code <= 0xDFFF:
            continue  # no JSON text holds a lone surrogate as a character
        for value in (character, f"a{character}", f".{character}", f"..{character}"):
            assert PROVIDER_ID.is_valid(value) == takes_as_provider_id(value), repr(value)
        assert SHOWN_NAME.is_valid(character) == takes_as_shown_name(character), repr(character)
        assert SHOWN_NAME.is_valid(character) != is_control(character)


@pytest.mark.parametrize(
    ("value", "taken"),
    [
        ("github", True),
        ("...", True),
        (".hidden", True),
        ("a.", True),
        (".", False),
        ("..", False),
        ("", False),
        ("a/b", False),
        ("github\n", False),  # Python's `$` would take it; JSON Schema's does not
        ("x" * MAX_PROVIDER_ID_LENGTH, True),
        ("x" * (MAX_PROVIDER_ID_LENGTH + 1), False),
    ],
)
def test_the_provider_id_schema_takes_what_the_daemon_takes(value: str, taken: bool) -> None:
    assert PROVIDER_ID.is_valid(value) is taken
    assert takes_as_provider_id(value) is taken


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(codec="utf-8"), max_size=8) | st.from_regex(r"\.{0,3}[a/\n]?\.{0,3}"))
def test_the_provider_id_schema_and_the_daemon_agree_on_any_string(value: str) -> None:
    assert PROVIDER_ID.is_valid(value) == takes_as_provider_id(value)


@pytest.mark.parametrize(
    "value",
    [
        "Bearer abc",
        "bearer abc",
        "BEARER  abc",
        "Bearer a b",
        "Bearer",
        "Bearer ",
        "Bearerabc",
        "Basic abc",
        "abc Bearer x",
        "",
    ],
)
async def test_the_authorization_pattern_takes_what_the_daemon_takes(
    bridge: RunningDaemon, value: str
) -> None:
    async with bridge.control.get(
        "http://bridge/v1/checks/control-plane", headers={"Authorization": value}
    ) as response:
        taken = response.status == 200

    # aiohttp strips a header value's surrounding spaces, as every HTTP server does.
    pattern = jsonschema_rs.validator_for({"type": "string", "pattern": BEARER_PATTERN})
    assert pattern.is_valid(value.strip()) is taken
