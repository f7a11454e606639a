"""The control plane's Auth Service v2: authenticate, wait, and the providers' redirect URIs.

Each call goes through ``ControlPlane.send`` (the forward's credentials, proxy, timeouts
and retry rule); each answer is validated here, at the edge, and a refusal becomes a
``CallFailed`` carrying the same error codes a failed forward has.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from yarl import URL

from bridge.daemon.config import Credentials
from bridge.daemon.control_plane import ControlPlane, Reply, Unreachable
from bridge.daemon.forward import HTTPValidationError
from bridge.daemon.model import JSON, FailureCode

CREDENTIALS_HINT = (
    "Check the API key (LANGSMITH_API_KEY or api_key_file), the workspace "
    "(LANGSMITH_WORKSPACE_ID) and the bearer token (OAUTH_BRIDGE_BEARER_TOKEN or "
    "bearer_token_file): your tool's, where its environment sets them, else the daemon's."
)


# How long the calls a person waits on (authenticate, providers, tokens) retry a connect.
INTERACTIVE_DEADLINE = 5.0


class AuthStart(BaseModel):
    """The answer of ``POST /v2/auth/authenticate``."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["completed", "pending", "connection_required", "token_expired"]
    url: str | None = None
    auth_id: str | None = None
    token: str | None = None


class AuthWait(BaseModel):
    """The answer of ``GET /v2/auth/wait/{auth_id}``."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["completed", "pending", "timeout", "not_found"]
    token: str | None = None


class Provider(BaseModel):
    """A provider as ``/v2/auth/providers/{id}`` shows it; only the redirect URIs are ours."""

    model_config = ConfigDict(extra="allow")

    provider_id: str
    name: str | None = None
    allowed_redirect_uris: list[str] | None = None


class CallFailed(Exception):
    """The control plane refused or failed a call: the forward's error codes, a message."""

    def __init__(
        self,
        error: FailureCode,
        message: str,
        *,
        control_plane_status: int | None = None,
        detail: JSON = None,
    ) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.control_plane_status = control_plane_status
        self.detail = detail

    def to_json(self) -> dict[str, JSON]:
        body: dict[str, JSON] = {"error": self.error.value, "message": self.message}
        if self.control_plane_status is not None:
            body["control_plane_status"] = self.control_plane_status
        if self.detail is not None:
            body["detail"] = self.detail
        return body


async def authenticate(
    control_plane: ControlPlane,
    *,
    provider_id: str,
    scopes: list[str],
    redirect_uri: str | None,
    user_id: str | None = None,
    agent_id: str | None = None,
    force_new: bool = False,
    credentials: Credentials | None = None,
) -> AuthStart:
    """Ask the control plane to start a login for ``provider_id``.

    With a ``redirect_uri`` the browser comes back to us; without one (the hosted
    callback) the control plane's own page finishes the flow.
    """
    body: dict[str, Any] = {"provider": provider_id, "scopes": scopes, "force_new": force_new}
    if redirect_uri is not None:
        body["redirect_uri"] = redirect_uri
    if user_id is not None:
        body["user_id"] = user_id
    if agent_id is not None:
        body["agent_id"] = agent_id
    reply = await _call(
        control_plane,
        "POST",
        ("v2", "auth", "authenticate"),
        json=body,
        credentials=credentials,
    )
    return _parse(reply, AuthStart, "start the login")


async def wait(
    control_plane: ControlPlane,
    auth_id: str,
    seconds: float,
    *,
    credentials: Credentials | None = None,
) -> AuthWait:
    """Long-poll the outcome of an auth request for up to ``seconds``."""
    url = control_plane.url("v2", "auth", "wait", auth_id).with_query(timeout=int(seconds))
    try:
        reply = await control_plane.send(
            "GET",
            url,
            timeout=seconds + control_plane.request_timeout,
            deadline=seconds,
            credentials=credentials,
        )
    except Unreachable as exc:
        raise CallFailed(
            FailureCode.CONTROL_PLANE_UNREACHABLE,
            f"The control plane could not be reached: {exc.reason}.",
        ) from None
    return _parse(reply, AuthWait, "report the login's outcome")


async def list_providers(
    control_plane: ControlPlane, *, credentials: Credentials | None = None
) -> list[Provider]:
    """Return the providers of the caller's organisation (a cheap authenticated read)."""
    reply = await _call(control_plane, "GET", ("v2", "auth", "providers"), credentials=credentials)
    body, _ = _json(reply.raw)
    if 200 <= reply.status < 300:
        # The shape of the list is not published: a bare list, or one under "providers".
        items = body.get("providers") if isinstance(body, dict) else body
        try:
            return [Provider.model_validate(item) for item in items or []]
        except (ValidationError, TypeError):
            raise CallFailed(
                FailureCode.CONTROL_PLANE_ERROR,
                f"The control plane answered HTTP {reply.status} to the list of providers, "
                "but not with a list; is the control plane URL right?",
                control_plane_status=reply.status,
            ) from None
    raise refusal(reply.status, body, "list the providers")


async def get_provider(
    control_plane: ControlPlane, provider_id: str, *, credentials: Credentials | None = None
) -> Provider:
    reply = await _call(
        control_plane, "GET", ("v2", "auth", "providers", provider_id), credentials=credentials
    )
    return _parse(reply, Provider, f"show the provider {provider_id!r}")


async def set_redirect_uris(
    control_plane: ControlPlane,
    provider_id: str,
    uris: list[str],
    *,
    credentials: Credentials | None = None,
) -> Provider:
    """Replace the provider's ``allowed_redirect_uris`` (PATCH: nothing else changes)."""
    reply = await _call(
        control_plane,
        "PATCH",
        ("v2", "auth", "providers", provider_id),
        json={"allowed_redirect_uris": uris},
        credentials=credentials,
    )
    return _parse(reply, Provider, f"update the provider {provider_id!r}")


class TokenExists(BaseModel):
    """The answer of ``GET /v2/auth/tokens/exists``."""

    model_config = ConfigDict(extra="ignore")

    has_token: bool


async def has_token(
    control_plane: ControlPlane, provider_id: str, *, credentials: Credentials | None = None
) -> bool:
    """Say whether the calling user has a token for ``provider_id``."""
    url = control_plane.url("v2", "auth", "tokens", "exists").with_query(provider_id=provider_id)
    reply = await _send(control_plane, "GET", url, credentials=credentials)
    return _parse(
        reply, TokenExists, f"tell whether you are connected to {provider_id!r}"
    ).has_token


async def revoke_tokens(
    control_plane: ControlPlane, provider_id: str, *, credentials: Credentials | None = None
) -> None:
    """Delete every token the calling user has for ``provider_id`` (the SDK's revoke_tokens)."""
    url = control_plane.url("v2", "auth", "tokens").with_query(provider_id=provider_id)
    reply = await _send(control_plane, "DELETE", url, credentials=credentials)
    if not 200 <= reply.status < 300:
        body, is_json = _json(reply.raw)
        raise refusal(reply.status, body if is_json else None, f"disconnect {provider_id!r}")


async def _call(
    control_plane: ControlPlane,
    method: str,
    segments: tuple[str, ...],
    json: Any = None,
    credentials: Credentials | None = None,
) -> Reply:
    return await _send(
        control_plane, method, control_plane.url(*segments), json=json, credentials=credentials
    )


async def _send(
    control_plane: ControlPlane,
    method: str,
    url: URL,
    json: Any = None,
    credentials: Credentials | None = None,
) -> Reply:
    try:
        # A person waits on each of these: a control plane that refuses connections is
        # reported in seconds, not after the forward's whole deadline of retries.
        return await control_plane.send(
            method, url, json=json, credentials=credentials, deadline=INTERACTIVE_DEADLINE
        )
    except Unreachable as exc:
        raise CallFailed(
            FailureCode.CONTROL_PLANE_UNREACHABLE,
            f"The control plane could not be reached: {exc.reason}. Check the control plane "
            "URL (--control-plane, OAUTH_BRIDGE_CONTROL_PLANE_URL) and the proxy (HTTPS_PROXY).",
        ) from None


M = TypeVar("M", bound=BaseModel)


def _parse(reply: Reply, model: type[M], doing: str) -> M:
    body, is_json = _json(reply.raw)
    if 200 <= reply.status < 300:
        try:
            return model.model_validate(body)
        except ValidationError:
            raise CallFailed(
                FailureCode.CONTROL_PLANE_ERROR,
                f"The control plane answered HTTP {reply.status} to {doing}, but not with "
                "what its API describes; is the control plane URL right?",
                control_plane_status=reply.status,
            ) from None
    raise refusal(reply.status, body if is_json else None, doing)


def refusal(status: int, body: JSON, doing: str) -> CallFailed:
    """Describe a refusal so that it says what to do."""
    detail = body.get("detail") if isinstance(body, dict) else None
    said = f": {detail}" if isinstance(detail, str) else ""
    if status == 403 and isinstance(detail, str) and "not enabled" in detail:
        return CallFailed(
            FailureCode.CONTROL_PLANE_REJECTED,
            f"The control plane refused to {doing}{said}. Agent Auth must be enabled for "
            "your LangSmith organization; until it is, your tool can get the authorization "
            "URL itself and use 'oauth-bridge expect --auth-url -'.",
            control_plane_status=status,
            detail=body,
        )
    if status in (401, 403):
        return CallFailed(
            FailureCode.CONTROL_PLANE_REJECTED,
            f"The control plane refused the credentials (HTTP {status}){said}. {CREDENTIALS_HINT}",
            control_plane_status=status,
            detail=body,
        )
    if status == 422:
        try:
            parsed: JSON = HTTPValidationError.model_validate(body).model_dump()
        except ValidationError:
            parsed = body
        return CallFailed(
            FailureCode.VALIDATION_ERROR,
            f"The control plane refused to {doing} as invalid (HTTP 422); see detail.",
            control_plane_status=status,
            detail=parsed,
        )
    if status == 404:
        return CallFailed(
            FailureCode.CONTROL_PLANE_REJECTED,
            f"The control plane could not {doing}: not found (HTTP 404){said}. Check the "
            "provider id, and that the control plane URL is the API's (a self-hosted one "
            "ends in /api-host).",
            control_plane_status=status,
            detail=body,
        )
    if 400 <= status < 500:
        return CallFailed(
            FailureCode.CONTROL_PLANE_REJECTED,
            f"The control plane refused to {doing} (HTTP {status}){said}.",
            control_plane_status=status,
            detail=body,
        )
    return CallFailed(
        FailureCode.CONTROL_PLANE_ERROR,
        f"The control plane failed to {doing} (HTTP {status}); try again in a moment.",
        control_plane_status=status,
        detail=body,
    )


def _json(raw: bytes) -> tuple[JSON, bool]:
    if not raw.strip():
        return None, False
    try:
        return json.loads(raw), True
    except (UnicodeDecodeError, ValueError):
        return None, False
