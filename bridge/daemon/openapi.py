"""The control API's OpenAPI 3.1 document, generated from its pydantic models.

``python -m bridge.daemon.openapi`` writes ``docs/control-api.openapi.json``; a test
fails when the committed document and the models drift apart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bridge import __version__
from bridge.daemon.control_schema import (
    AgentAuthLoginRequest,
    AllowLoopbackRequest,
    AllowLoopbackResult,
    CallbackRequest,
    ConnectionList,
    CreatedLogin,
    DaemonStatus,
    Disconnected,
    LoginList,
    LoginObject,
    LoginRequest,
    Problem,
)

MODELS: tuple[type[BaseModel], ...] = (
    LoginRequest,
    AgentAuthLoginRequest,
    CallbackRequest,
    AllowLoopbackRequest,
    LoginObject,
    CreatedLogin,
    LoginList,
    Problem,
    DaemonStatus,
    AllowLoopbackResult,
    ConnectionList,
    Disconnected,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return _json(_ref(Problem), description)


LOGIN_ID = {"name": "login_id", "in": "path", "required": True, "schema": {"type": "string"}}
PROVIDER_ID = {"name": "provider_id", "in": "path", "required": True, "schema": {"type": "string"}}
LOGIN_SECRET = {
    "name": "X-Login-Secret",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "The secret of the 201 answer: with it, result.token and "
    "result.control_plane_body are in the answer (a wrong one is 403).",
}
# The control plane's own credential headers, from a caller that has its own: every call
# made for the request goes as that LangSmith user, each header replacing the daemon's.
CALLER_CREDENTIALS = [
    {
        "name": name,
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": f"The caller's {what}, used instead of the daemon's (memory only).",
    }
    for name, what in (
        ("X-Api-Key", "LangSmith API key"),
        ("X-Tenant-Id", "workspace id"),
        ("Authorization", "'Bearer <token>'"),
    )
]


def build_document() -> dict[str, Any]:
    """Return the control API as an OpenAPI 3.1 document."""
    _, schemas = models_json_schema(
        [(model, "validation") for model in MODELS[:4]]
        + [(model, "serialization") for model in MODELS[4:]],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, Any] = {
        "/v1/logins": {
            "post": {
                "operationId": "create_login",
                "parameters": CALLER_CREDENTIALS,
                "summary": "Register a login: expect a state, or have the daemon start one "
                "(Agent Auth: scopes instead of state)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"oneOf": [_ref(LoginRequest), _ref(AgentAuthLoginRequest)]}
                        }
                    },
                },
                "responses": {
                    "201": _json(
                        _ref(CreatedLogin), "Registered (or, Agent Auth, already connected)"
                    ),
                    "409": _problem("That state is already registered"),
                    "422": _problem("The body is not valid (detail: pydantic's errors)"),
                    "502": _problem("The control plane refused or failed to start the login"),
                    "503": _problem("The pending limit is reached"),
                },
            },
            "get": {
                "operationId": "list_logins",
                "summary": "List the logins the daemon holds (never a token)",
                "responses": {"200": _json(_ref(LoginList), "Every login")},
            },
        },
        "/v1/logins/{login_id}": {
            "parameters": [LOGIN_ID],
            "get": {
                "operationId": "get_login",
                "summary": "Show a login; with wait, long-poll until it is terminal",
                "parameters": [
                    LOGIN_SECRET,
                    {
                        "name": "wait",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "number", "minimum": 0, "maximum": 300},
                        "description": "Seconds to wait for an outcome (more is clamped to 300)",
                    },
                ],
                "responses": {
                    "200": _json(_ref(LoginObject), "The login"),
                    "403": _problem("X-Login-Secret is not this login's secret"),
                    "404": _problem("No login has this id"),
                    "422": _problem("wait is not a number of seconds"),
                },
            },
            "delete": {
                "operationId": "cancel_login",
                "summary": "Cancel a pending login",
                "parameters": [LOGIN_SECRET],
                "responses": {
                    "200": _json(_ref(LoginObject), "Cancelled"),
                    "403": _problem("X-Login-Secret is not this login's secret"),
                    "404": _problem("No login has this id"),
                    "409": _problem("Already terminal (login: how it ended)"),
                },
            },
        },
        "/v1/callbacks": {
            "post": {
                "operationId": "complete_callback",
                "summary": "Process a redirect address pasted by the user, as the browser would",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(CallbackRequest)}},
                },
                "responses": {
                    "200": _json(_ref(LoginObject), "The login's outcome"),
                    "400": _problem("Not a callback address of this daemon, or malformed"),
                    "404": _problem("No pending login has this state"),
                    "503": _problem("The daemon is stopping: nothing was sent"),
                },
            }
        },
        "/v1/status": {
            "get": {
                "operationId": "get_status",
                "summary": "Describe the daemon (never a secret, never a token)",
                "responses": {"200": _json(_ref(DaemonStatus), "The daemon's status")},
            }
        },
        "/v1/providers/{provider_id}/allow-loopback": {
            "parameters": [PROVIDER_ID],
            "post": {
                "operationId": "allow_loopback",
                "parameters": CALLER_CREDENTIALS,
                "summary": "Add this daemon's callback to the provider's allowed redirect URIs",
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref(AllowLoopbackRequest)}},
                },
                "responses": {
                    "200": _json(_ref(AllowLoopbackResult), "Done, or nothing to do"),
                    "422": _problem("The provider id or the body is not valid"),
                    "502": _problem("The control plane refused or failed"),
                },
            },
        },
        "/v1/connections": {
            "get": {
                "operationId": "list_connections",
                "summary": "Each provider, and whether this LangSmith user is connected to it",
                "parameters": CALLER_CREDENTIALS,
                "responses": {
                    "200": _json(_ref(ConnectionList), "The providers"),
                    "502": _problem("The control plane refused or failed"),
                },
            }
        },
        "/v1/connections/{provider_id}": {
            "parameters": [PROVIDER_ID],
            "delete": {
                "operationId": "disconnect",
                "summary": "Revoke this LangSmith user's tokens for the provider",
                "parameters": CALLER_CREDENTIALS,
                "responses": {
                    "200": _json(_ref(Disconnected), "Revoked"),
                    "422": _problem("The provider id is not one path segment"),
                    "502": _problem("The control plane refused or failed"),
                },
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "oauth-bridge control API",
            "version": __version__,
            "description": "JSON over HTTP on the Unix socket control.sock in the runtime dir. "
            "Only the user's own processes reach it (0600 socket in a 0700 dir, peer uid "
            "checked), so it takes no token.",
        },
        "servers": [{"url": "http://bridge", "description": "curl --unix-socket control.sock"}],
        "paths": paths,
        "components": {"schemas": schemas["$defs"]},
    }


def render() -> str:
    return json.dumps(build_document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else Path("docs/control-api.openapi.json")
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
