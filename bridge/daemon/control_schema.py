"""The control API's bodies as pydantic models: validated at the edge, and its OpenAPI document.

Requests are validated with these; answers are built from the login model and
described here, so that ``docs/control-api.openapi.json`` is generated from one place
(``python -m bridge.daemon.openapi``) and a test fails when the two drift apart.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
)

DEFAULT_TTL_SECONDS = 600
MAX_TTL_SECONDS = 3600
# The deepest a JSON body may nest: the deepest the control API's own bodies go is 2.
MAX_JSON_DEPTH = 32
# The largest body the control socket reads (aiohttp's client_max_size, its default).
MAX_BODY_BYTES = 1024**2
# The longest a long-poll waits: a longer wait is clamped to this.
MAX_WAIT_SECONDS = 300

# Characters that steer how text is shown rather than being shown: bidi embeddings,
# overrides, isolates and marks reorder what follows them (a provider id "gpj.exe" shown
# as "exe.jpg" on a result page or a terminal), and the line and paragraph separators
# break a line. With C0, DEL and C1 these are "control characters" below.
STEERING = frozenset(
    "\u061c\u200e\u200f\u2028\u2029"
    + "".join(map(chr, range(0x202A, 0x202F)))
    + "".join(map(chr, range(0x2066, 0x206A)))
)

# The same characters as a regular expression's class body, written with escapes only, so
# that one pattern reads the same in ECMA-262 (JSON Schema's dialect) and in Python.
_CONTROLS = (
    "\\x00-\\x1f\\x7f-\\x9f\\u061c\\u200e\\u200f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069"
)
# A name shown to people: no control character.
SHOWN_NAME_PATTERN = f"^[^{_CONTROLS}]*$"
# One path segment: no '/' and no control character, and not '.' or '..' (a URL path
# resolves those away). Said without look-arounds, by how it starts: a character that is
# not a dot; or a dot, then one that is not; or two dots and one more character.
_SEGMENT = f"[^/{_CONTROLS}]"
_NOT_DOT = f"[^./{_CONTROLS}]"
PROVIDER_ID_PATTERN = f"^(?:{_NOT_DOT}|\\.{_NOT_DOT}|\\.\\.{_SEGMENT}){_SEGMENT}*$"

MAX_PROVIDER_ID_LENGTH = 200
ProviderId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_PROVIDER_ID_LENGTH,
        description="The provider's id, as in /v2/auth/callback/{provider_id}: one path "
        "segment, so no '/', no control characters, not '.' or '..'.",
        # Validated by one_segment (for its message); the pattern says the same to a reader.
        json_schema_extra={"pattern": PROVIDER_ID_PATTERN},
        examples=["github"],
    ),
]


def integral(value: object) -> object:
    """Take JSON Schema's integer as it is: 600 or 600.0 (one number to JSON), never "600"."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


TtlSeconds = Annotated[
    StrictInt,
    Field(ge=1, le=MAX_TTL_SECONDS, description="How long the login stays pending."),
    # After the Field: before it, the bounds would leave the schema as pydantic's ge and le.
    BeforeValidator(integral),
]


ClientName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        description="How the registering application names itself: the result page says "
        "'return to <client_name>'. No control characters.",
        json_schema_extra={"pattern": SHOWN_NAME_PATTERN},
    ),
]


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
    if not 1 <= len(value) <= MAX_PROVIDER_ID_LENGTH:
        raise ValueError(f"must be 1 to {MAX_PROVIDER_ID_LENGTH} characters")
    if "/" in value or any(map(is_control, value)):
        raise ValueError("must not contain '/' or control characters")
    if value in (".", ".."):
        # A URL path normalises these away: no redirect could ever come back to them.
        raise ValueError("must not be '.' or '..'")
    return value


class LoginRequest(BaseModel):
    """Expect a redirect for a state the tool got from the control plane itself."""

    model_config = ConfigDict(
        extra="forbid",
        title="ExpectLoginRequest",
        json_schema_extra={"examples": [{"provider_id": "github", "state": "st-from-the-tool"}]},
    )

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

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"provider_id": "github", "scopes": ["repo"]}]},
    )

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


LoginStatus = Literal[
    "pending", "forwarding", "succeeded", "failed", "denied", "expired", "cancelled"
]


class DescribedAnswer(BaseModel):
    """An answer of the control API: every field it has is described here."""

    # Answers are built from the login model, not validated: these describe them for the
    # OpenAPI document (and its tests), so their validators are built when first used.
    model_config = ConfigDict(extra="forbid", defer_build=True)


class LoginObject(DescribedAnswer):
    """A login: never its state, never its code."""

    id: str
    provider_id: str
    status: LoginStatus
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


# Every ``error`` a refusal of the control socket may carry, whatever its route.
Refusal = Literal[
    "bad_request",  # 400: not a request aiohttp could read
    "bad_url",  # 400: not a callback address of this daemon
    "forbidden",  # 403: another user's process, or a wrong X-Login-Secret
    "not_found",  # 404: no such login, no pending login, no such route
    "method_not_allowed",  # 405: with Allow
    "conflict",  # 409
    "payload_too_large",  # 413: a body over MAX_BODY_BYTES
    "unsupported_media_type",  # 422: a body that is not application/json
    "validation_error",  # 422: a body, parameter or header that is not valid; 502 too
    "internal_error",  # 500: a fault of ours (its log has the details)
    "control_plane_rejected",  # 502, the forward's codes
    "control_plane_error",
    "control_plane_unreachable",
    "too_many_pending",  # 503
    "stopping",
    "no_resources",
]
REFUSALS: frozenset[str] = frozenset(get_args(Refusal))


class Problem(DescribedAnswer):
    """Any answer of the control socket that is not 2xx: a code, a sentence, what else helps."""

    error: Refusal = Field(description="What went wrong, for a program to tell apart.")
    message: str = Field(description="What went wrong and what to do, for people.")
    control_plane_status: int | None = Field(
        default=None, description="502: the control plane's HTTP status, when it answered."
    )
    detail: Any = Field(
        default=None,
        description="422: each problem found (pydantic's errors); 502: the control plane's "
        "own detail, when it gave one.",
    )
    login: LoginObject | None = Field(
        default=None, description="The login the refusal is about, where there is one."
    )


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


class ProviderCheck(DescribedAnswer):
    provider_id: str
    redirect_uri: str = Field(description="This daemon's callback for the provider.")
    allows_this_daemon: bool | None = Field(
        description="Whether the provider's allowed_redirect_uris holds redirect_uri; null "
        "when the deployment does not tell."
    )


class ControlPlaneCheck(DescribedAnswer):
    """What ``doctor`` learns from the control plane: never a login, a cheap read."""

    control_plane_url: str
    reachable: bool
    accepted: bool = Field(description="Whether it took the credentials.")
    message: str = Field(description="Why not, when it was not reached or did not accept.")
    providers: list[ProviderCheck]
    control_plane_status: int | None = Field(
        default=None, description="Its HTTP status, when it answered with a refusal."
    )


class BrowserCheck(DescribedAnswer):
    url: str = Field(description="http://127.0.0.1:PORT/self-test/{token}, for a browser to open.")
    token: str


class BrowserCheckSeen(DescribedAnswer):
    seen: bool = Field(description="Whether a browser opened the address.")
