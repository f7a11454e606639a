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

    def to_json(self) -> dict[str, JSON]:
        """Render the contract's login object: never the state, never the code."""
        return {
            "id": self.id,
            "provider_id": self.provider_id,
            "status": self.status.value,
            "redirect_uri": self.redirect_uri,
            "created_at": rfc3339(self.created_at),
            "expires_at": rfc3339(self.expires_at),
            "result": self.result if self.status.terminal else None,
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


def rfc3339(timestamp: float) -> str:
    return (
        datetime.fromtimestamp(timestamp, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
