"""The client's pure core: the wait for a login's outcome, written once for both twins.

``wait_flow`` is a generator that does no I/O: it yields each call it wants made on the
control socket (``Call``), each pause (``Pause``) and each browser it wants opened
(``Open``), and is sent back what came of it. ``Bridge`` drives it with a blocking
socket, ``AsyncBridge`` with asyncio's streams, and a test with a fake clock.

It also checks the ``auto`` rule by evidence: a loopback login whose browser has not
opened its trampoline by the reach deadline is cancelled, and a hosted one is started
in its place (its browser may be anywhere).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from bridge.client.transport import Answer
from bridge.errors import BridgeError, DaemonUnavailable

TERMINAL = frozenset({"succeeded", "failed", "denied", "expired", "cancelled"})
# The daemon answers a long-poll after at most this long; a slice asks for no more.
MAX_WAIT_SLICE = 300.0
# How long past the TTL to wait for the daemon's own word that the login expired.
EXPIRY_MARGIN = 2.0
# How long a wait rides out a daemon that went away (a restart), asking again meanwhile.
RECONNECT_SECONDS = 30.0
RECONNECT_PAUSE = 0.2
# How long a daemon may be gone before the wait starts one again (a restart is faster).
REVIVE_AFTER = 1.0
# How long past its deadline a wait stays for a login that is still forwarding: the
# daemon bounds a forward well within this, so only a broken daemon reaches it.
FORWARDING_GRACE = 120.0
# The default of --reach-timeout: how long a loopback login's browser has to show up.
REACH_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class Call:
    """A request the flow wants made on the control socket."""

    method: str
    path: str
    body: Any = None
    timeout: float = 10.0
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Pause:
    """A pause the flow wants taken before it goes on."""

    seconds: float


@dataclass(frozen=True)
class Revive:
    """The daemon went away mid-wait: start one again (the store kept the login)."""


@dataclass(frozen=True)
class Open:
    """A browser the flow wants opened at ``url``; it is sent back whether one started."""

    url: str


Step = Call | Pause | Open | Revive


@dataclass(frozen=True)
class Fallback:
    """What the reach check needs: when to give up on the browser, and how to start hosted."""

    deadline: float  # on the flow's clock
    hosted: Call  # the registration of the hosted login that replaces this one
    open_browser: bool = True
    seconds: float = 0.0  # the reach timeout it was armed with, to say so


@dataclass
class Waited:
    """Where a wait ended: the login as last described, and its secret (it may be a new one)."""

    login: dict[str, Any]
    secret: str | None
    replaced: bool = False
    # Set when the loopback login was replaced by a hosted one: the new one's address.
    open_url: str | None = None
    auth_url: str | None = None
    browser_opened: bool = False


def secret_header(secret: str | None) -> dict[str, str]:
    return {} if secret is None else {"X-Login-Secret": secret}


def epoch_of(rfc3339: str) -> float:
    """Return the Unix time of an RFC 3339 timestamp of the login object."""
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def wait_flow(
    login: dict[str, Any],
    *,
    secret: str | None = None,
    timeout: float | None,
    tick: float | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    on_replaced: Callable[[Waited], None] | None = None,
    fallback: Fallback | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> Generator[Step, Any, Waited]:
    """Long-poll a login until it ends; ride out a restart of the daemon; check the reach.

    Return where it ended. ``clock`` is monotonic (deadlines), ``wall`` the Unix time
    (the login's expiry): both injectable, so the reach timeout is tested in microseconds.
    """
    waited = Waited(login, secret)
    started = clock()
    expires = epoch_of(login["expires_at"])
    # Past the TTL the daemon expires the login itself; the margin lets us see that answer.
    deadline = started + (
        timeout if timeout is not None else max(0.0, expires - wall()) + EXPIRY_MARGIN
    )
    lost_since: float | None = None
    revived = False
    asked_once = False
    while waited.login["status"] not in TERMINAL:
        if fallback is not None and waited.login.get("browser_seen"):
            fallback = None  # the browser reached us: loopback works here
        if fallback is not None and clock() >= fallback.deadline:
            replaced = yield from _replace_with_hosted(waited, fallback)
            fallback = None
            if replaced is not None:
                waited = replaced
                if on_replaced is not None:
                    on_replaced(waited)
                if timeout is None:
                    # The new login's own TTL bounds the wait now.
                    expires = epoch_of(waited.login["expires_at"])
                    deadline = clock() + max(0.0, expires - wall()) + EXPIRY_MARGIN
                continue
        remaining = deadline - clock()
        if (
            remaining <= 0
            and timeout is None
            and waited.login["status"] == "forwarding"
            and remaining > -FORWARDING_GRACE
        ):
            # A redirect that came just in time: the daemon bounds its forward, so waiting
            # on for the outcome cannot hang, and giving up would misreport it.
            remaining = tick or 1.0
        elif remaining <= 0 and asked_once:
            break
        remaining = max(remaining, 0.0)  # even a wait that has run out asks once
        if on_progress is not None:
            on_progress(waited.login)
        slice_ = min(remaining, tick or MAX_WAIT_SLICE)
        if fallback is not None:
            slice_ = max(0.0, min(slice_, fallback.deadline - clock()))
        asked = clock()
        try:
            answer = yield Call(
                "GET",
                f"/v1/logins/{quote(waited.login['id'], safe='')}?wait={slice_:.3f}",
                None,
                slice_ + 30,
                secret_header(waited.secret),
            )
        except DaemonUnavailable:
            # The daemon went away: a restart keeps every pending login, so ask again.
            if lost_since is None:
                lost_since = clock()
            if clock() - lost_since > RECONNECT_SECONDS:
                raise
            if not revived and clock() - lost_since >= REVIVE_AFTER:
                # Not a restart (`oauth-bridge stop`, a crash, an idle exit): the login
                # is still in the store, and a new daemon serves it.
                revived = True
                yield Revive()
            yield Pause(RECONNECT_PAUSE)
            continue
        lost_since = None
        asked_once = True
        assert isinstance(answer, Answer)
        if answer.status != 200:
            raise BridgeError(f"the daemon lost the login {waited.login['id']}: {answer.message}")
        waited.login = answer.body
        early = clock() - asked < slice_ / 2
        if waited.login["status"] not in TERMINAL and early and fallback is None:
            # Answered early yet not ended: the daemon is stopping. Do not spin meanwhile.
            yield Pause(RECONNECT_PAUSE)
    return waited


def _replace_with_hosted(waited: Waited, fallback: Fallback) -> Generator[Step, Any, Waited | None]:
    """Cancel a loopback login no browser came to; start a hosted one. None if it moved on."""
    cancel = yield Call(
        "DELETE",
        f"/v1/logins/{quote(waited.login['id'], safe='')}",
        headers=secret_header(waited.secret),
    )
    assert isinstance(cancel, Answer)
    if cancel.status != 200:
        # It ended (or is being forwarded) meanwhile: the browser came after all.
        if isinstance(cancel.body, dict) and isinstance(cancel.body.get("login"), dict):
            waited.login = cancel.body["login"]
        return None
    created = yield fallback.hosted
    assert isinstance(created, Answer)
    if created.status != 201 or not isinstance(created.body, dict):
        raise BridgeError(
            "no browser reached this oauth-bridge, and LangSmith's own page could not be "
            f"started instead: {created.message}"
        )
    body = created.body
    replaced = Waited(
        body,
        body.get("secret"),
        replaced=True,
        open_url=body.get("open_url"),
        auth_url=body.get("auth_url"),
    )
    if fallback.open_browser and replaced.open_url and body.get("status") not in TERMINAL:
        opened = yield Open(replaced.open_url)
        replaced.browser_opened = bool(opened)
    return replaced
