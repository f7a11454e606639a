"""A login: one expected OAuth redirect, from registration to its outcome."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

JSON = Any


class Status(enum.StrEnum):
    PENDING = "pending"
    FORWARDING = "forwarding"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self not in (Status.PENDING, Status.FORWARDING)


class FailureCode(enum.StrEnum):
    """The contract's ``result.error`` values for a failed login."""

    CONTROL_PLANE_REJECTED = "control_plane_rejected"
    VALIDATION_ERROR = "validation_error"
    CONTROL_PLANE_ERROR = "control_plane_error"
    CONTROL_PLANE_UNREACHABLE = "control_plane_unreachable"
    PROVIDER_ERROR = "provider_error"
    ISSUER_MISMATCH = "issuer_mismatch"
    INTERRUPTED = "interrupted"
    CREDENTIALS_LOST = "credentials_lost"


class Callback(enum.StrEnum):
    """Where the provider sends the browser back: this daemon, or the control plane's page."""

    LOOPBACK = "loopback"
    HOSTED = "hosted"


class Credentials(enum.StrEnum):
    """Whose LangSmith credentials a login is made with."""

    DAEMON = "daemon"
    CALLER = "caller"


# What only the tool that started a login may read: its answers may hold tokens.
# The control plane's 'detail' can echo what it was sent (FastAPI's 'input': the code).
CREATOR_ONLY = ("token", "control_plane_body", "detail")


@dataclass
class Outcome:
    """How a login ended, split into what may be stored and what stays in memory.

    The control plane's answer (its body, a 422 detail that may echo the code) can
    hold secrets, so only ``stored`` reaches SQLite; ``answer`` lives in memory.
    """

    status: Status
    stored: dict[str, JSON] = field(default_factory=dict)
    answer: dict[str, JSON] = field(default_factory=dict)

    def result(self) -> dict[str, JSON]:
        return {**self.stored, **self.answer}


@dataclass(frozen=True)
class NewLogin:
    """What a login is registered with, from the control API through to the store."""

    provider_id: str
    state: str
    redirect_uri: str
    ttl_seconds: float
    # Only a hash of it is kept: the creator shows it to read the token.
    secret: str
    expected_issuer: str | None = None
    require_issuer: bool = False
    auth_id: str | None = None
    client_name: str | None = None
    callback: Callback = Callback.LOOPBACK
    credentials: Credentials = Credentials.DAEMON
    # Which daemon credentials a daemon login is made with (a fingerprint, never a value):
    # after a restart with other ones, it is not sent as their user.
    daemon_fingerprint: str | None = None


@dataclass
class Login:
    id: str
    provider_id: str
    status: Status
    redirect_uri: str
    created_at: float
    expires_at: float
    expected_issuer: str | None = None
    require_issuer: bool = False
    result: dict[str, JSON] | None = None
    # Agent Auth: the control plane's id of this login's auth request (never a secret).
    auth_id: str | None = None
    # The application that registered it, as it named itself: the page says "return to".
    client_name: str | None = None
    callback: Callback = Callback.LOOPBACK
    browser_seen: bool = False
    credentials: Credentials = Credentials.DAEMON
    secret_hash: bytes = field(default=b"", repr=False)
    daemon_fingerprint: str | None = None

    def to_json(self, *, for_creator: bool = False) -> dict[str, JSON]:
        """Render the contract's login object: never the state, never the code.

        The token and the control plane's body go only to the tool that started the
        login (``for_creator``: it showed the login's secret).
        """
        result = self.result if self.status.terminal else None
        if result is not None and not for_creator:
            result = {k: v for k, v in result.items() if k not in CREATOR_ONLY}
        return {
            "id": self.id,
            "provider_id": self.provider_id,
            "status": self.status.value,
            "redirect_uri": self.redirect_uri,
            "callback": self.callback.value,
            "browser_seen": self.browser_seen,
            "credentials": self.credentials.value,
            "created_at": rfc3339(self.created_at),
            "expires_at": rfc3339(self.expires_at),
            "result": result,
        }


def interrupted() -> Outcome:
    """The outcome of a forward cut off by the daemon stopping: never resent."""
    return Outcome(
        Status.FAILED,
        stored={
            "error": FailureCode.INTERRUPTED.value,
            "message": "oauth-bridge stopped while forwarding this login; it was not sent "
            "again, because the code may already have been used. Start the login again.",
        },
    )


def credentials_lost() -> Outcome:
    """The outcome of a login whose caller's credentials a restart took away."""
    return Outcome(
        Status.FAILED,
        stored={
            "error": FailureCode.CREDENTIALS_LOST.value,
            "message": "oauth-bridge restarted after this login was started with your tool's "
            "own LangSmith credentials, which it keeps in memory only; nothing was sent. "
            "Start the login again.",
        },
    )


def rfc3339(timestamp: float) -> str:
    return (
        datetime.fromtimestamp(timestamp, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
