"""The control API's bodies as pydantic models: validated at the edge, and its OpenAPI document.

Requests are validated with these; answers are built from the login model and
described here, so that ``docs/control-api.openapi.json`` is generated from one place
(``python -m bridge.daemon.openapi``) and a test fails when the two drift apart.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

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
    StrictInt,
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


# Characters that steer how text is shown rather than being shown: bidi embeddings,
# overrides, isolates and marks reorder what follows them (a provider id "gpj.exe" shown
# as "exe.jpg" on a result page or a terminal), and the line and paragraph separators
# break a line. With C0, DEL and C1 these are "control characters" below.
STEERING = frozenset(
    "\u061c\u200e\u200f\u2028\u2029"
    + "".join(map(chr, range(0x202A, 0x202F)))
    + "".join(map(chr, range(0x2066, 0x206A)))
)


def is_control(character: str) -> bool:
    """Say whether ``character`` is a C0 or C1 control, DEL, or one that steers display."""
    code = ord(character)
    return code < 0x20 or 0x7F <= code <= 0x9F or character in STEERING


def no_controls(value: str | None) -> str | None:
    """Refuse control characters in a name shown to people."""
    if value is not None and any(map(is_control, value)):
        raise ValueError("must not contain control characters")
    return value


def one_segment(value: str) -> str:
    """Refuse a provider id that could not be one path segment of the callback URL."""
    if "/" in value or any(map(is_control, value)):
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
    require_issuer: StrictBool = False
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
    force_new: StrictBool = False
    ttl_seconds: TtlSeconds = DEFAULT_TTL_SECONDS
    client_name: ClientName | None = None
    callback: Literal["loopback", "hosted"] = Field(
        default="loopback",
        description="loopback: the provider sends the browser back to this daemon; hosted: "
        "to the control plane's own page, which works from a browser on any machine.",
    )

    _provider = field_validator("provider_id")(one_segment)
    _client = field_validator("client_name")(no_controls)


class CallbackRequest(BaseModel):
    """The address the browser ended on, pasted by the user."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, Field(min_length=1, max_length=16384)]


class AllowLoopbackRequest(BaseModel):
    """Add this daemon's callback to a provider's allowed redirect URIs."""

    model_config = ConfigDict(extra="forbid")

    dry_run: StrictBool = False


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
    callback: Literal["loopback", "hosted"] = Field(
        description="Where the provider sends the browser back: this daemon (loopback) or "
        "the control plane's own page (hosted; redirect_uri is then that page)."
    )
    browser_seen: bool = Field(
        description="True once the browser opened the trampoline or delivered a callback."
    )
    credentials: Literal["caller", "daemon"] = Field(
        description="Whose LangSmith credentials the login is made with."
    )
    created_at: str = Field(description="RFC 3339")
    expires_at: str = Field(description="RFC 3339")
    result: dict[str, Any] | None = Field(
        description="null until terminal; then what the contract says for its status "
        "(succeeded: control_plane_status, and for Agent Auth already_connected; "
        "failed: error, message, ...; denied: error, error_description). "
        "result.token and result.control_plane_body are there only in an answer to "
        "a request that shows the login's secret (X-Login-Secret)."
    )


class CreatedLogin(LoginObject):
    """The 201 answer: what only the login's creator gets, here and nowhere else."""

    secret: str = Field(
        description="Send it as X-Login-Secret to read result.token and "
        "result.control_plane_body; kept by the daemon only as a hash."
    )
    auth_url: str | None = Field(
        default=None, description="Agent Auth only: the authorization URL (holds the state)."
    )
    open_url: str | None = Field(
        default=None,
        description="Agent Auth only: the address to open or print. A loopback login's "
        "is the one-time trampoline http://127.0.0.1:PORT/go/{token}; a hosted login's "
        "is the authorization URL itself.",
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


class Connection(DescribedAnswer):
    provider_id: str
    name: str | None
    connected: bool = Field(description="Whether this LangSmith user has a token for it.")


class ConnectionList(DescribedAnswer):
    connections: list[Connection]


class Disconnected(DescribedAnswer):
    provider_id: str
    connected: Literal[False]


class AllowLoopbackResult(DescribedAnswer):
    provider_id: str
    redirect_uri: str = Field(description="This daemon's callback for the provider.")
    allowed_redirect_uris: list[str] = Field(description="The list as it is now (or would be).")
    changed: bool
    dry_run: bool
