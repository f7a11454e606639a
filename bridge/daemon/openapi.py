"""The control API's OpenAPI 3.1 document, generated from its pydantic models.

``python -m bridge.daemon.openapi`` writes ``docs/control-api.openapi.json``; a test
fails when the committed document and the models drift apart. The daemon serves the
same text at ``GET /v1/openapi.json``.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bridge import __version__
from bridge.daemon.control_schema import (
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    MAX_PROVIDER_ID_LENGTH,
    MAX_WAIT_SECONDS,
    PROVIDER_ID_PATTERN,
    AgentAuthLoginRequest,
    AllowLoopbackRequest,
    AllowLoopbackResult,
    BrowserCheck,
    BrowserCheckSeen,
    CallbackRequest,
    ConnectionList,
    ControlPlaneCheck,
    CreatedLogin,
    DaemonStatus,
    Disconnected,
    LoginList,
    LoginObject,
    LoginRequest,
    LoginStatus,
    Problem,
)

# Validated as they come in (their schema is pydantic's validation schema)...
REQUESTS: tuple[type[BaseModel], ...] = (
    LoginRequest,
    AgentAuthLoginRequest,
    CallbackRequest,
    AllowLoopbackRequest,
)
# ...and answered (their serialization schema).
ANSWERS: tuple[type[BaseModel], ...] = (
    LoginObject,
    CreatedLogin,
    LoginList,
    Problem,
    DaemonStatus,
    AllowLoopbackResult,
    ConnectionList,
    Disconnected,
    ControlPlaneCheck,
    BrowserCheck,
    BrowserCheckSeen,
)
MODELS = REQUESTS + ANSWERS


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def _problem(description: str) -> dict[str, Any]:
    return _json(_ref(Problem), description)


def _sentence(clause: str) -> str:
    """A clause said on its own: its first letter a capital."""
    return clause[:1].upper() + clause[1:]


PROVIDER_ID_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_PROVIDER_ID_LENGTH,
    "pattern": PROVIDER_ID_PATTERN,
}
LOGIN_ID = {
    "name": "login_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}
PROVIDER_ID = {
    "name": "provider_id",
    "in": "path",
    "required": True,
    "schema": PROVIDER_ID_SCHEMA,
    "description": "One path segment: no '/', no control character, not '.' or '..'.",
}
LOGIN_SECRET = {
    "name": "X-Login-Secret",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "The secret of the 201 answer: with it, result.token and "
    "result.control_plane_body are in the answer (a wrong one is 403).",
}
# What the daemon takes as 'Bearer <token>' (the scheme in any case); an empty header is
# no header.
BEARER_PATTERN = "^(?:[Bb][Ee][Aa][Rr][Ee][Rr] .*\\S.*)?$"
# The control plane's own credential headers, from a caller that has its own: every call
# made for the request goes as that LangSmith user, each header replacing the daemon's.
CALLER_CREDENTIALS = [
    {
        "name": name,
        "in": "header",
        "required": False,
        "schema": schema,
        "description": f"The caller's {what}, used instead of the daemon's (memory only).",
    }
    for name, what, schema in (
        ("X-Api-Key", "LangSmith API key", {"type": "string"}),
        ("X-Tenant-Id", "workspace id", {"type": "string"}),
        ("Authorization", "'Bearer <token>'", {"type": "string", "pattern": BEARER_PATTERN}),
    )
]

# The refusals more than one route shares.
PEER = "The peer is another user's process: the control socket serves its owner only"
TOO_LARGE = _problem(f"The body is over {MAX_BODY_BYTES} bytes (payload_too_large)")
BAD_BODY = (
    f"The body is not valid (validation_error; detail: each problem), nests deeper than "
    f"{MAX_JSON_DEPTH} levels (validation_error), or is not sent as application/json "
    "(unsupported_media_type)"
)
BAD_AUTHORIZATION = "the Authorization header is not 'Bearer <token>' (validation_error)"
CONTROL_PLANE_FAILED = _problem(
    "The control plane refused or failed: error is one of the forward's codes "
    "(control_plane_rejected, validation_error, control_plane_error, "
    "control_plane_unreachable), with control_plane_status and detail when it answered"
)
NO_ROUTE = (
    "No such route (not_found): a provider id that is not one path segment, as '.' or "
    "'..', which a URL resolves away, may not reach this one"
)
# What aiohttp's parser refuses before any route sees it; any operation may get it.
MAX_LINE_BYTES = 8190
NOT_HTTP = (
    f"a request the daemon cannot read as HTTP, as a request line or a header over "
    f"{MAX_LINE_BYTES} bytes (bad_request)"
)
LOCATION = {
    "Location": {
        "description": "/v1/logins/{id}: the new login's address",
        "schema": {"type": "string"},
    }
}


def _json_body(model: type[BaseModel] | dict[str, Any], *, required: bool) -> dict[str, Any]:
    schema = model if isinstance(model, dict) else _ref(model)
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _paths() -> dict[str, Any]:
    paths = _operations()
    for item in paths.values():
        for method, operation in item.items():
            if method != "parameters":
                operation["responses"].setdefault("400", _problem(_sentence(NOT_HTTP)))
    return paths


def _operations() -> dict[str, Any]:
    return {
        "/v1/logins": {
            "post": {
                "operationId": "create_login",
                "summary": "Register a login: expect a state, or have the daemon start one "
                "(Agent Auth: scopes instead of state)",
                "parameters": CALLER_CREDENTIALS,
                "requestBody": _json_body(
                    {"oneOf": [_ref(LoginRequest), _ref(AgentAuthLoginRequest)]}, required=True
                ),
                "responses": {
                    "201": _json(
                        _ref(CreatedLogin),
                        "Registered (or, Agent Auth, already connected)",
                        headers=LOCATION,
                    ),
                    "403": _problem(PEER),
                    "409": _problem(
                        "That state is already registered (conflict; login: its login)"
                    ),
                    "413": TOO_LARGE,
                    "422": _problem(f"{BAD_BODY}; or {BAD_AUTHORIZATION}"),
                    "502": CONTROL_PLANE_FAILED,
                    "503": _problem(
                        "The pending limit is reached (too_many_pending), or the daemon is "
                        "stopping (stopping): nothing was registered"
                    ),
                },
            },
            "get": {
                "operationId": "list_logins",
                "summary": "List the logins the daemon holds (never a token), filtered by "
                "status and provider",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": list(get_args(LoginStatus))},
                        "description": "Only the logins with this status",
                    },
                    {
                        "name": "provider_id",
                        "in": "query",
                        "required": False,
                        "schema": PROVIDER_ID_SCHEMA,
                        "description": "Only the logins for this provider",
                    },
                ],
                "responses": {
                    "200": _json(_ref(LoginList), "The logins that pass the filters, oldest first"),
                    "403": _problem(PEER),
                    "422": _problem(
                        "A filter is not valid: an unknown status, a provider id that is not "
                        "one path segment, or either given twice (validation_error)"
                    ),
                },
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
                        "schema": {"type": "number", "minimum": 0},
                        "description": "Seconds to wait for the login to be terminal: the "
                        f"answer comes as soon as it is, or once the wait ends. At most "
                        f"{MAX_WAIT_SECONDS}: a longer wait is clamped to {MAX_WAIT_SECONDS}.",
                    },
                ],
                "responses": {
                    "200": _json(_ref(LoginObject), "The login"),
                    "403": _problem(f"{PEER}; or X-Login-Secret is not this login's secret"),
                    "404": _problem("No login has this id (not_found)"),
                    "422": _problem("wait is not a number of seconds >= 0 (validation_error)"),
                },
            },
            "delete": {
                "operationId": "cancel_login",
                "summary": "Cancel a pending login",
                "parameters": [LOGIN_SECRET],
                "responses": {
                    "200": _json(_ref(LoginObject), "Cancelled"),
                    "403": _problem(f"{PEER}; or X-Login-Secret is not this login's secret"),
                    "404": _problem("No login has this id (not_found)"),
                    "409": _problem("Already terminal (conflict; login: how it ended)"),
                },
            },
        },
        "/v1/callbacks": {
            "post": {
                "operationId": "complete_callback",
                "summary": "Process a redirect address pasted by the user, as the browser would",
                "description": "Waits for the outcome. A repeat of a callback whose login "
                "reached an outcome (succeeded, failed, denied) answers 200 with it and "
                "forwards nothing again; a login that ended before any callback counted "
                "(cancelled, expired) is no pending login: 404.",
                "requestBody": _json_body(CallbackRequest, required=True),
                "responses": {
                    "200": _json(_ref(LoginObject), "The login's outcome"),
                    "400": _problem(
                        "Not a callback address of this daemon, or malformed: no state, "
                        f"neither code nor error, a parameter given twice (bad_url); or {NOT_HTTP}"
                    ),
                    "403": _problem(PEER),
                    "404": _problem(
                        "No pending login matches (not_found): no login has this state at "
                        "this provider, or its login was cancelled or expired before any "
                        "callback came (login: that login)"
                    ),
                    "413": TOO_LARGE,
                    "422": _problem(BAD_BODY),
                    "503": _problem(
                        "The daemon is stopping (stopping) or short of file descriptors "
                        "(no_resources): nothing was sent, the login is still pending, and "
                        "the same address sent again later completes it"
                    ),
                },
            }
        },
        "/v1/status": {
            "get": {
                "operationId": "get_status",
                "summary": "Describe the daemon (never a secret, never a token)",
                "responses": {
                    "200": _json(_ref(DaemonStatus), "The daemon's status"),
                    "403": _problem(PEER),
                },
            }
        },
        "/v1/providers/{provider_id}/allow-loopback": {
            "parameters": [PROVIDER_ID],
            "post": {
                "operationId": "allow_loopback",
                "summary": "Add this daemon's callback to the provider's allowed redirect URIs",
                "parameters": CALLER_CREDENTIALS,
                "requestBody": _json_body(AllowLoopbackRequest, required=False),
                "responses": {
                    "200": _json(_ref(AllowLoopbackResult), "Done, or nothing to do"),
                    "403": _problem(PEER),
                    "404": _problem(NO_ROUTE),
                    "413": TOO_LARGE,
                    "422": _problem(
                        f"The provider id is not one path segment; {BAD_BODY}; or "
                        f"{BAD_AUTHORIZATION}"
                    ),
                    "502": CONTROL_PLANE_FAILED,
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
                    "403": _problem(PEER),
                    "422": _problem(_sentence(BAD_AUTHORIZATION)),
                    "502": CONTROL_PLANE_FAILED,
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
                    "403": _problem(PEER),
                    "404": _problem(NO_ROUTE),
                    "422": _problem(
                        f"The provider id is not one path segment, or {BAD_AUTHORIZATION}"
                    ),
                    "502": CONTROL_PLANE_FAILED,
                },
            },
        },
        "/v1/checks/control-plane": {
            "get": {
                "operationId": "check_control_plane",
                "summary": "For doctor: is the control plane reached, does it take the "
                "credentials, does each provider allow this daemon's callback",
                "description": "A cheap read, never a login. A control plane that cannot be "
                "reached or refuses is an answer here (200), not an error.",
                "parameters": CALLER_CREDENTIALS,
                "responses": {
                    "200": _json(_ref(ControlPlaneCheck), "What the control plane said"),
                    "403": _problem(PEER),
                    "422": _problem(_sentence(BAD_AUTHORIZATION)),
                },
            }
        },
        "/v1/checks/browser": {
            "post": {
                "operationId": "start_browser_check",
                "summary": "For doctor: a one-time address for a browser on this machine to open",
                "responses": {
                    "200": _json(_ref(BrowserCheck), "The address and its token"),
                    "403": _problem(PEER),
                },
            }
        },
        "/v1/checks/browser/{token}": {
            "parameters": [
                {
                    "name": "token",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1},
                }
            ],
            "get": {
                "operationId": "get_browser_check",
                "summary": "For doctor: whether a browser opened the address; with wait, "
                "long-poll until one does",
                "parameters": [
                    {
                        "name": "wait",
                        "in": "query",
                        "required": False,
                        # Lenient on purpose (doctor's question, not a login): anything
                        # that is not a number of seconds >= 0 waits not at all.
                        "schema": {"type": "string"},
                        "description": "Seconds to wait for the browser: a number, at most "
                        f"{MAX_WAIT_SECONDS} (a longer wait is clamped to {MAX_WAIT_SECONDS}); "
                        "anything else, a negative number included, is 0.",
                    },
                ],
                "responses": {
                    "200": _json(
                        _ref(BrowserCheckSeen),
                        "Whether a browser opened it (false for a token never issued)",
                    ),
                    "403": _problem(PEER),
                    "404": _problem(
                        "No such route (not_found): a token of '.' or '..', which a URL "
                        "resolves away"
                    ),
                },
            },
        },
        "/v1/openapi.json": {
            "get": {
                "operationId": "get_openapi_document",
                "summary": "This document",
                "responses": {
                    "200": _json({"type": "object"}, "The control API's OpenAPI 3.1 document"),
                    "403": _problem(PEER),
                },
            }
        },
    }


DESCRIPTION = f"""\
JSON over HTTP on the Unix socket control.sock in the runtime dir. Only the user's own \
processes reach it (0600 socket in a 0700 dir, peer uid checked), so it takes no token.

Every answer that is not 2xx is a Problem, `{{"error": code, "message": sentence, ...}}`, \
whatever its route, an unknown one included: 404 `not_found` for a route that does not \
exist, 405 `method_not_allowed` (with `Allow`) for a method a route does not have, 413 \
`payload_too_large` for a body over {MAX_BODY_BYTES} bytes, 400 `bad_request` for a \
request that is not HTTP the daemon reads (a request line or a header over \
{MAX_LINE_BYTES} bytes), and 500 `internal_error` for a fault of the daemon's own (its \
log has the details).

A body is JSON sent as `Content-Type: application/json`, nested at most \
{MAX_JSON_DEPTH} deep; else 422."""


def build_document() -> dict[str, Any]:
    """Return the control API as an OpenAPI 3.1 document."""
    _, schemas = models_json_schema(
        [(model, "validation") for model in REQUESTS]
        + [(model, "serialization") for model in ANSWERS],
        ref_template="#/components/schemas/{model}",
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "oauth-bridge control API",
            "version": __version__,
            "description": DESCRIPTION,
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": "http://bridge", "description": "curl --unix-socket control.sock"}],
        # No token: the socket's mode and the peer check are the control API's security.
        "security": [],
        "paths": _paths(),
        "components": {"schemas": schemas["$defs"]},
    }


def render() -> str:
    return json.dumps(build_document(), indent=2, sort_keys=True) + "\n"


@functools.cache
def served() -> bytes:
    """The document as ``GET /v1/openapi.json`` serves it: the committed text."""
    return render().encode("utf-8")


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else Path("docs/control-api.openapi.json")
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
