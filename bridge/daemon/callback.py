"""A callback, from the browser or pasted by the user: check it, consume its state once, forward."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from dataclasses import dataclass

from multidict import MultiMapping

from bridge.daemon.agent_auth import AgentAuth
from bridge.daemon.control_plane import ControlPlane
from bridge.daemon.forward import forward
from bridge.daemon.logins import CredentialsLost, Logins
from bridge.daemon.model import (
    Credentials,
    FailureCode,
    Login,
    Outcome,
    Status,
    credentials_lost,
    interrupted,
)

log = logging.getLogger(__name__)

# A parameter given twice is an attack or a bug, never a choice (RFC 6749 3.1: "request
# and response parameters MUST NOT be included more than once"). These are named in the
# refusal; any other repeated one is refused too.
SINGLE_VALUED = ("code", "state", "iss", "error")
# How long a paste (or a repeat of one) waits for a forward, beyond the forward's own bound.
REPEAT_WAIT_MARGIN = 5.0
# How long a browser's callback waits for the outcome before its 303: past this the
# result page says "Finishing sign-in" and refreshes itself, rather than a blank tab.
FIRST_LOOK_SECONDS = 1.0


# Why a callback was refused, by key: the result page's address carries the key, so it
# never reflects text from the request.
REASONS = {
    "missing-state": "The address has no 'state' parameter.",
    "missing-code": "The address has neither a 'code' nor an 'error' parameter.",
    **{
        f"duplicate-{name}": f"The parameter '{name}' appears more than once."
        for name in SINGLE_VALUED
    },
    "duplicate-parameter": "A parameter appears more than once.",
    "malformed-body": "The form the browser posted could not be read.",
    "no-login": "No login is waiting for this state at this provider.",
    "not-a-page": "There is no page at this address.",
    "prefetch": "This address is served only when it is opened, not fetched ahead of time.",
    "spent": "This sign-in address works once, and it was used already (or its login "
    "ended). Start the login again from your application.",
    "other-user": "This connection comes from another user of this computer.",
    "wrong-host": "oauth-bridge answers only to its own loopback address (127.0.0.1, [::1] "
    "or localhost, with its port), so that no other web site can reach it.",
    "forgotten": "The outcome of this sign-in is no longer kept here (oauth-bridge keeps it "
    "for a quarter of an hour); your application has it.",
    "stopping": "oauth-bridge is restarting and sent nothing yet. Reload this page in a few "
    "seconds to finish signing in.",
    "no-resources": "oauth-bridge is short of resources on this computer and sent nothing "
    "yet. Reload this page in a few seconds to finish signing in.",
}
# Refusals that leave the login pending: the same callback, reloaded, completes it.
NOT_NOW = ("stopping", "no-resources")


@dataclass(frozen=True)
class CallbackResult:
    """What a callback came to: a login's outcome, or why no login was touched."""

    page_status: str  # a login status, or "invalid" / "unknown"
    login: Login | None = None
    reason: str = ""  # a key of REASONS when no login was touched

    @property
    def message(self) -> str:
        return REASONS.get(self.reason, "")

    @property
    def http_status(self) -> int:
        if self.reason in NOT_NOW:
            return 503
        return {"invalid": 400, "unknown": 404}.get(self.page_status, 200)


def invalid(reason: str) -> CallbackResult:
    return CallbackResult("invalid", reason=reason)


async def handle_callback(
    *,
    logins: Logins,
    control_plane: ControlPlane,
    agent_auth: AgentAuth,
    provider_id: str,
    params: MultiMapping[str],
    wait_seconds: float,
    from_browser: bool = False,
) -> CallbackResult:
    """Process one callback; whatever arrives concurrently, a state is forwarded at most once.

    It waits at most ``wait_seconds`` for the outcome, then answers with the login as it is.
    """
    deadline = asyncio.get_running_loop().time() + wait_seconds
    if len(set(params)) != len(params):
        for name in SINGLE_VALUED:
            if len(params.getall(name, [])) > 1:
                return invalid(f"duplicate-{name}")
        return invalid("duplicate-parameter")
    state = params.get("state", "")
    code = params.get("code", "")
    error = params.get("error", "")
    if not state:
        return invalid("missing-state")
    if not code and not error:
        return invalid("missing-code")

    login = logins.find_by_state(state)
    if login is None or login.provider_id != provider_id:
        # A state registered for another provider stays pending: this callback may be
        # a mix-up attack, and the real redirect can still arrive.
        return CallbackResult("unknown", reason="no-login")

    if from_browser and not login.browser_seen:
        logins.browser_seen(login.id)
    if login.status is Status.PENDING:
        verdict = _refusal(
            login,
            issuer=params.get("iss"),
            error=error,
            error_description=params.get("error_description"),
        )
        if verdict is None and not _has_credentials(logins, login):
            # Never sent as the daemon's user instead: the token would go to another user.
            log.warning("login %s: its caller's credentials were lost in a restart", login.id)
            verdict = credentials_lost()
        if verdict is not None:
            logins.finish(login.id, verdict, current=Status.PENDING)
        elif logins.stopping:
            # Not now: the login stays pending, and the same callback, reloaded once the
            # daemon is back, completes it.
            return CallbackResult(Status.PENDING.value, login, reason="stopping")
        elif not can_open_a_socket():
            # Out of file descriptors: the forward could not even connect. Consuming the
            # state now would fail the login for nothing; it stays pending for a reload.
            log.warning("login %s: no file descriptor left for the forward; not sent", login.id)
            return CallbackResult(Status.PENDING.value, login, reason="no-resources")
        elif await logins.begin_forward(login.id):
            log.info("login %s forwarding to the control plane", login.id)
            task = logins.track_forward(
                _forward(logins, control_plane, agent_auth, login=login, code=code, state=state)
            )
            # asyncio.wait, not await: if this handler is cancelled (shutdown, a server
            # that cancels handlers of closed connections) or its wait runs out, the
            # forward still runs to its end.
            await asyncio.wait({task}, timeout=wait_seconds)

    # One bound for the whole callback: what the forward's wait used is gone.
    remaining = max(0.0, deadline - asyncio.get_running_loop().time())
    final = await logins.wait_terminal(login.id, remaining)
    if final is None:
        return CallbackResult("unknown", reason="no-login")
    return CallbackResult(final.status.value, final)


def _has_credentials(logins: Logins, login: Login) -> bool:
    try:
        logins.credentials_of(login)
    except CredentialsLost:
        return False
    return True


def can_open_a_socket() -> bool:
    """Say whether a socket can be opened now: out of descriptors, a forward cannot connect."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
            return False
        raise
    return True


def _refusal(
    login: Login, *, issuer: str | None, error: str, error_description: str | None
) -> Outcome | None:
    """Return the outcome when the callback must not be forwarded, None when it may."""
    if login.expected_issuer is not None:
        if issuer is None and login.require_issuer:
            return _issuer_mismatch("The provider's redirect carried no 'iss' parameter.")
        if issuer is not None and issuer != login.expected_issuer:
            return _issuer_mismatch(
                f"The redirect names the issuer '{issuer}', "
                f"but this login expects '{login.expected_issuer}'."
            )
    if error == "access_denied":
        result: dict[str, object] = {"error": "access_denied"}
        if error_description:
            result["error_description"] = error_description
        return Outcome(Status.DENIED, stored=result)
    if error:
        message = f"The provider reported an error: {error}"
        if error_description:
            message += f" ({error_description})"
        return Outcome(
            Status.FAILED,
            stored={
                "error": FailureCode.PROVIDER_ERROR.value,
                "message": message,
                "provider_error": error,
                **({"error_description": error_description} if error_description else {}),
            },
        )
    return None


def _issuer_mismatch(message: str) -> Outcome:
    return Outcome(
        Status.FAILED,
        stored={"error": FailureCode.ISSUER_MISMATCH.value, "message": message},
    )


async def _forward(
    logins: Logins,
    control_plane: ControlPlane,
    agent_auth: AgentAuth,
    *,
    login: Login,
    code: str,
    state: str,
) -> None:
    try:
        outcome = await forward(
            control_plane,
            provider_id=login.provider_id,
            code=code,
            state=state,
            credentials=logins.credentials_of(login),
        )
        if login.auth_id is not None:
            outcome = await agent_auth.settle(login, outcome)
    except asyncio.CancelledError:
        if login.auth_id and login.credentials is Credentials.DAEMON:
            # The control plane may have used the code: the next start asks its wait
            # endpoint how it ended (AgentAuth.resume), so it stays forwarding till then.
            log.warning("login %s: cut off mid-forward; the next start asks how it ended", login.id)
        else:
            logins.finish(login.id, interrupted(), current=Status.FORWARDING)
        raise
    except Exception as exc:  # a bug must end the login, not leave it forwarding
        log.error("login %s: forward failed unexpectedly (%s)", login.id, type(exc).__name__)
        outcome = interrupted()
    logins.finish(login.id, outcome, current=Status.FORWARDING)
