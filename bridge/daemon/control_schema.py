"""The control API's bodies as pydantic models: validated at the edge, and its OpenAPI document.

Requests are validated with these; answers are built from the login model and
described here, so that ``docs/control-api.openapi.json`` is generated from one place
(``python -m bridge.daemon.openapi``) and a test fails when the two drift apart.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_TTL_SECONDS = 600
MAX_TTL_SECONDS = 3600

ProviderId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description="The provider's id, as in /v2/auth/callback/{provider_id}: one path "
        "segment, so no '/', no control characters, not '.' or '..'.",
    ),
]
TtlSeconds = Annotated[
    int,
    Field(ge=1, le=MAX_TTL_SECONDS, description="How long the login stays pending."),
]


ClientName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        description="How the registering application names itself: the result page says "
        "'return to <client_name>'.",
    ),
]


def no_controls(value: str | None) -> str | None:
    """Refuse control characters in a name shown to people."""
    if value is not None and any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value):
        raise ValueError("must not contain control characters")
    return value


def one_segment(value: str) -> str:
    """Refuse a provider id that could not be one path segment of the callback URL."""
    if "/" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("must not contain '/' or control characters")
    if value in (".", ".."):
        # A URL path normalises these away: no redirect could ever come back to them.
        raise ValueError("must not be '.' or '..'")
    return value


class LoginRequest(BaseModel):
    """Expect a redirect for a state the tool got from the control plane itself."""

    model_config = ConfigDict(extra="forbid", title="ExpectLoginRequest")

    provider_id: ProviderId
    state: Annotated[str, Field(min_length=1, max_length=4096)]
    ttl_seconds: TtlSeconds = DEFAULT_TTL_SECONDS
    expected_issuer: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    require_issuer: bool = False
    client_name: ClientName | None = None

    _provider = field_validator("provider_id")(one_segment)
    _client = field_validator("client_name")(no_controls)


class AgentAuthLoginRequest(BaseModel):
    """Have the daemon start the login with the control plane (Agent Auth)."""

    model_config = ConfigDict(extra="forbid")

    provider_id: ProviderId
    scopes: Annotated[list[Annotated[str, Field(max_length=1024)]], Field(max_length=100)]
    user_id: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    agent_id: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    force_new: bool = False
    ttl_seconds: TtlSeconds = DEFAULT_TTL_SECONDS
    client_name: ClientName | None = None

    _provider = field_validator("provider_id")(one_segment)
    _client = field_validator("client_name")(no_controls)


class CallbackRequest(BaseModel):
    """The address the browser ended on, pasted by the user."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, Field(min_length=1, max_length=16384)]


class AllowLoopbackRequest(BaseModel):
    """Add this daemon's callback to a provider's allowed redirect URIs."""

    model_config = ConfigDict(extra="forbid")

    dry_run: bool = False


# -- answers: extra='forbid', so that a test sees an answer outgrow its description --


class DescribedAnswer(BaseModel):
    """An answer of the control API: every field it has is described here."""

    model_config = ConfigDict(extra="forbid")


class LoginObject(DescribedAnswer):
    """A login: never its state, never its code."""

    id: str
    provider_id: str
    status: Literal[
        "pending", "forwarding", "succeeded", "failed", "denied", "expired", "cancelled"
    ]
    redirect_uri: str
    created_at: str = Field(description="RFC 3339")
    expires_at: str = Field(description="RFC 3339")
    result: dict[str, Any] | None = Field(
        description="null until terminal; then what the contract says for its status "
        "(succeeded: control_plane_status, control_plane_body, and for Agent Auth token "
        "and already_connected; failed: error, message, ...; denied: error, "
        "error_description)"
    )


class CreatedLogin(LoginObject):
    """The 201 answer: an Agent Auth login adds the URL to open, here and nowhere else."""

    auth_url: str | None = Field(
        default=None, description="Agent Auth only: the authorization URL to open."
    )


class LoginList(DescribedAnswer):
    logins: list[LoginObject]


class Problem(DescribedAnswer):
    """Any refusal: a code, a sentence for people, and what else helps."""

    error: str
    message: str
    control_plane_status: int | None = None
    detail: Any = None
    login: LoginObject | None = None


class CredentialSources(DescribedAnswer):
    """Where each credential came from, never its value."""

    api_key: Literal["environment", "file"] | None
    bearer_token: Literal["environment", "file"] | None
    workspace_id: Literal["environment", "config"] | None


class DaemonStatus(DescribedAnswer):
    pid: int
    url: str
    control_socket: str
    version: str
    started_at: str
    uptime_seconds: float
    pending: int
    control_plane_url: str
    credentials: CredentialSources
    api_key_fingerprint: str | None = Field(
        description="12 hex digits that tell API keys apart (never the key): a tool compares "
        "its own LANGSMITH_API_KEY's to see whether this daemon uses the same key."
    )
    log: str = Field(description="Where the daemon's log goes.")
    recent_logins: list[LoginObject]


class AllowLoopbackResult(DescribedAnswer):
    provider_id: str
    redirect_uri: str = Field(description="This daemon's callback for the provider.")
    allowed_redirect_uris: list[str] = Field(description="The list as it is now (or would be).")
    changed: bool
    dry_run: bool
