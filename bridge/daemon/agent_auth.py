"""Agent Auth logins: the daemon starts the flow, and the control plane's wait says how it ended.

A login started here has an ``auth_id``. While it is pending or forwarding, one
long-poll at a time on the control plane's wait endpoint learns its outcome: that is
how a login ends when the control plane sent the browser to its own page instead of
ours, and how a successful forward learns the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from bridge.daemon import auth_service
from bridge.daemon.auth_service import CallFailed
from bridge.daemon.config import Credentials
from bridge.daemon.control_plane import ControlPlane
from bridge.daemon.logins import CredentialsLost, Logins
from bridge.daemon.model import (
    Callback,
    FailureCode,
    Login,
    NewLogin,
    Outcome,
    Status,
    credentials_lost,
    interrupted,
)
from bridge.daemon.model import Credentials as Whose

log = logging.getLogger(__name__)

# The longest single long-poll: what the control plane's own SDK asks for.
MAX_POLL_SECONDS = 300.0
# A wait that answers at once (no long-poll behind it) is asked again no sooner than this.
MIN_POLL_INTERVAL = 1.0
# A failed forward whose code the control plane may have used all the same.
MAYBE_USED = (FailureCode.CONTROL_PLANE_ERROR.value, FailureCode.CONTROL_PLANE_UNREACHABLE.value)
# After a failed wait, the pause before the next, doubling up to the last.
WAIT_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)
# After a restart, how long the one wait that asks about an interrupted forward may take.
CONFIRM_SECONDS = 1.0
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclass
class Watch:
    """What the wait endpoint has said of one login so far."""

    completed: asyncio.Event = field(default_factory=asyncio.Event)
    token: str | None = None
    task: asyncio.Task[None] | None = None


class AgentAuth:
    """Start Agent Auth logins, and follow each to the end through the wait endpoint."""

    def __init__(
        self,
        logins: Logins,
        control_plane: ControlPlane,
        *,
        redirect_uri: Callable[[str], str],
    ) -> None:
        self.logins = logins
        self.control_plane = control_plane
        self.redirect_uri = redirect_uri
        self._watches: dict[str, Watch] = {}

    async def start(
        self,
        *,
        provider_id: str,
        scopes: list[str],
        ttl_seconds: float,
        secret: str,
        user_id: str | None = None,
        agent_id: str | None = None,
        force_new: bool = False,
        client_name: str | None = None,
        callback: Callback = Callback.LOOPBACK,
        credentials: Credentials | None = None,
    ) -> tuple[Login, str | None]:
        """Ask the control plane for a login; return it and the URL to open (None if connected).

        ``credentials`` are the caller's (None: the daemon's); the login is made, forwarded
        and followed with them. Raises CallFailed when the control plane refuses or fails:
        nothing is registered.
        """
        our_callback = self.redirect_uri(provider_id)
        started = await auth_service.authenticate(
            self.control_plane,
            provider_id=provider_id,
            scopes=scopes,
            redirect_uri=our_callback if callback is Callback.LOOPBACK else None,
            user_id=user_id,
            agent_id=agent_id,
            force_new=force_new,
            credentials=credentials,
        )
        whose = Whose.DAEMON if credentials is None else Whose.CALLER
        if started.status == "completed":
            login = self.logins.register(
                NewLogin(
                    provider_id=provider_id,
                    state=_unguessable(),  # no redirect will come: no state to expect
                    redirect_uri=our_callback if callback is Callback.LOOPBACK else "",
                    ttl_seconds=ttl_seconds,
                    secret=secret,
                    auth_id=started.auth_id or "",
                    client_name=client_name,
                    callback=callback,
                    credentials=whose,
                ),
                credentials=credentials,
            )
            self.logins.finish(
                login.id, _succeeded(started.token, already_connected=True), current=Status.PENDING
            )
            return self.logins.get(login.id) or login, None
        if not started.url:
            raise CallFailed(
                FailureCode.CONTROL_PLANE_ERROR,
                f"The control plane answered '{started.status}' without an authorization URL.",
            )
        check_authorization_url(started.url, control_plane_url=str(self.control_plane.base_url))
        state, names = _state_of(started.url)
        sends_here = names == our_callback
        if (
            not sends_here
            and names is not None
            and _on_loopback(names)
            and not _same_origin(names, str(self.control_plane.base_url))
        ):
            # A loopback address that is not ours (a stale default, another port): the
            # code would go to whoever holds that port, perhaps another local user.
            raise CallFailed(
                FailureCode.CONTROL_PLANE_ERROR,
                "The control plane's authorization URL sends the browser back to a "
                "loopback address that is not this oauth-bridge's callback; nothing was "
                "registered. Check the provider's redirect URIs on LangSmith "
                "(oauth-bridge providers allow-loopback).",
            )
        if callback is Callback.LOOPBACK and not sends_here:
            log.info(
                "the control plane sends the %s browser to its own page, not here; the login "
                "ends through its wait endpoint",
                provider_id,
            )
        if started.auth_id is None and not sends_here:
            raise CallFailed(
                FailureCode.CONTROL_PLANE_ERROR,
                "The control plane's authorization URL does not send the browser here, and "
                "its answer has no auth_id to learn the outcome with.",
            )
        login = self.logins.register(
            NewLogin(
                provider_id=provider_id,
                state=state if sends_here and state else _unguessable(),
                redirect_uri=our_callback if sends_here else (names or ""),
                ttl_seconds=ttl_seconds,
                secret=secret,
                auth_id=started.auth_id,
                client_name=client_name,
                # What the control plane made of it: a loopback login it sent to its own
                # page ends there, wherever the browser runs.
                callback=Callback.LOOPBACK if sends_here else Callback.HOSTED,
                credentials=whose,
            ),
            credentials=credentials,
        )
        self.watch(login)
        return login, started.url

    def watch(self, login: Login) -> None:
        """Follow ``login`` on the wait endpoint until it is terminal (one long-poll at a time)."""
        if login.auth_id is None or login.id in self._watches:
            return
        watch = Watch()
        self._watches[login.id] = watch
        watch.task = asyncio.get_running_loop().create_task(self._follow(login, watch))
        watch.task.add_done_callback(lambda task: self._followed(login.id, task))

    def _followed(self, login_id: str, task: asyncio.Task[None]) -> None:
        watch = self._watches.get(login_id)
        if watch is None or not watch.completed.is_set():
            self._watches.pop(login_id, None)
        # else: completed while our forward runs; settle() reads the token, then lets go.
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            log.error(
                "login %s: following it failed unexpectedly (%s)", login_id, type(error).__name__
            )

    def resume(self) -> None:
        """Follow again the logins a previous run of the daemon left pending or forwarding."""
        for login in self.logins.store.waiting_on_agent_auth():
            if not self._has_credentials(login):
                # Its caller's credentials went with the previous run: it can be neither
                # followed nor forwarded as that user, and never as ours.
                self.logins.finish(login.id, credentials_lost(), current=Status.PENDING)
                continue
            self.watch(login)
        for login in self.logins.store.interrupted_on_agent_auth():
            if not self._has_credentials(login):
                self.logins.finish(login.id, interrupted(), current=Status.FORWARDING)
                continue
            self.logins.track_forward(self._confirm_interrupted(login))

    def _has_credentials(self, login: Login) -> bool:
        try:
            self.logins.credentials_of(login)
        except CredentialsLost:
            return False
        return True

    async def _confirm_interrupted(self, login: Login) -> None:
        """Ask the wait endpoint once how a forward that a stop cut off ended.

        The code is never sent again; but the control plane may have used it, and its
        word is final: ``completed`` makes the login succeed, with the token.
        """
        assert login.auth_id is not None
        try:
            said = await auth_service.wait(self.control_plane, login.auth_id, CONFIRM_SECONDS)
        except CallFailed as exc:
            log.warning("login %s: could not ask how it ended (%s)", login.id, exc.error.value)
            said = None
        # A cancel here (shutdown) leaves it forwarding: the next start asks again.
        if said is not None and said.status == "completed":
            log.info("login %s: the control plane completed it before the stop", login.id)
            outcome = _succeeded(said.token, already_connected=False)
        else:
            outcome = interrupted()
        self.logins.finish(login.id, outcome, current=Status.FORWARDING)

    async def settle(self, login: Login, forwarded: Outcome) -> Outcome:
        """Decide how a forwarded Agent Auth login ended: the control plane's word is final."""
        try:
            return await self._settle(login, forwarded, self._watches.get(login.id))
        finally:
            watch = self._watches.get(login.id)
            if watch is not None and (watch.task is None or watch.task.done()):
                self._watches.pop(login.id, None)

    async def _settle(self, login: Login, forwarded: Outcome, watch: Watch | None) -> Outcome:
        if forwarded.status is Status.SUCCEEDED:

            def succeeded() -> Outcome:
                token = watch.token if watch is not None else None
                return Outcome(
                    Status.SUCCEEDED,
                    stored={**forwarded.stored, "already_connected": False},
                    answer={**forwarded.answer, "token": token},
                )

            if watch is not None:
                # The token comes through the wait endpoint; no word within the forward's
                # deadline, and the login succeeds without it.
                try:
                    await asyncio.wait_for(
                        watch.completed.wait(), self.control_plane.deadline_seconds
                    )
                except TimeoutError:
                    log.warning("login %s: no token from the control plane in time", login.id)
                except asyncio.CancelledError:
                    # Shutdown: the code was used, so it succeeded, token or not.
                    self.logins.finish(login.id, succeeded(), current=Status.FORWARDING)
                    raise
            return succeeded()
        maybe_used = forwarded.stored.get("error") in MAYBE_USED
        if watch is not None and maybe_used and not watch.completed.is_set():
            # A 5xx or no answer: the control plane may have used the code all the same.
            # Its wait endpoint says, within the forward's deadline.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.completed.wait(), self.control_plane.deadline_seconds)
        if watch is not None and watch.completed.is_set():
            # Our forward failed, yet the control plane says the login is made (its own
            # page got there first, or it answered badly after doing it): so it ended.
            return _succeeded(watch.token, already_connected=False)
        return forwarded

    async def close(self) -> None:
        """Stop every long-poll: at shutdown, and nothing is lost (auth_id is stored)."""
        tasks = [w.task for w in self._watches.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _follow(self, login: Login, watch: Watch) -> None:
        assert login.auth_id is not None
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            current = self.logins.get(login.id)
            if current is None or current.status.terminal or self.logins.stopping:
                return
            remaining = current.expires_at - self.logins.clock()
            if current.status is Status.FORWARDING:
                # A forward under way past the TTL still needs the control plane's word.
                remaining = max(remaining, self.control_plane.deadline_seconds)
            elif remaining <= 0:
                return  # the expiry timer ends it
            asked = loop.time()
            try:
                said = await self._wait_or_end(
                    login, login.auth_id, min(remaining, MAX_POLL_SECONDS)
                )
            except CredentialsLost:
                return
            except CallFailed as exc:
                pause = WAIT_BACKOFF[min(failures, len(WAIT_BACKOFF) - 1)]
                failures += 1
                if failures == 1:
                    log.warning(
                        "login %s: the control plane's wait failed (%s); asking again in %.0fs",
                        login.id,
                        exc.error.value,
                        pause,
                    )
                await self.logins.wait_terminal(login.id, pause)
                continue
            if said is None:
                return  # the login ended while we waited
            failures = 0
            if said.status == "completed":
                watch.token = said.token
                watch.completed.set()
                # A forward under way records the outcome itself (settle); else it is ours.
                if self.logins.finish(
                    login.id,
                    _succeeded(said.token, already_connected=False),
                    current=Status.PENDING,
                ):
                    log.info("login %s completed on the control plane's side", login.id)
                return
            if said.status == "not_found":
                gone = Outcome(
                    Status.EXPIRED,
                    stored={
                        "message": "The control plane no longer knows this login: it expired "
                        "there. Start it again."
                    },
                )
                self.logins.finish(login.id, gone, current=Status.PENDING)
                return
            if loop.time() - asked < MIN_POLL_INTERVAL:
                await self.logins.wait_terminal(login.id, MIN_POLL_INTERVAL)

    async def _wait_or_end(
        self, login: Login, auth_id: str, seconds: float
    ) -> auth_service.AuthWait | None:
        """Long-poll the wait endpoint, or return None as soon as the login ends here."""
        poll = asyncio.ensure_future(
            auth_service.wait(
                self.control_plane,
                auth_id,
                seconds,
                credentials=self.logins.credentials_of(login),
            )
        )
        ended = asyncio.ensure_future(self._ended(login.id))
        try:
            await asyncio.wait({poll, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (poll, ended):
                task.cancel()
            await asyncio.gather(poll, ended, return_exceptions=True)
        if poll.cancelled():
            return None
        error = poll.exception()
        if error is not None:
            raise error
        return poll.result()

    async def _ended(self, login_id: str) -> None:
        """Return once the login is terminal here (cancelled, expired, forwarded)."""
        while True:
            login = await self.logins.wait_terminal(login_id, MAX_POLL_SECONDS)
            if login is None or login.status.terminal or self.logins.stopping:
                return


def _succeeded(token: str | None, *, already_connected: bool) -> Outcome:
    return Outcome(
        Status.SUCCEEDED,
        stored={"control_plane_status": None, "already_connected": already_connected},
        answer={"control_plane_body": None, "token": token},
    )


def _state_of(auth_url: str) -> tuple[str | None, str | None]:
    """Return the URL's state and the redirect_uri it names (each None unless once)."""
    query = parse_qs(urlsplit(auth_url).query, keep_blank_values=True)
    states = query.get("state", [])
    redirects = query.get("redirect_uri", [])
    state = states[0] if len(states) == 1 and states[0] else None
    return state, redirects[0] if len(redirects) == 1 else None


def _same_origin(url: str, other: str) -> bool:
    """Say whether two URLs share scheme, host and port (a local control plane's own page)."""
    try:
        a, b = urlsplit(url), urlsplit(other)
        return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)
    except ValueError:
        return False


def _on_loopback(url: str) -> bool:
    import ipaddress

    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_authorization_url(url: str, *, control_plane_url: str) -> None:
    """Refuse an authorization URL that is not an absolute https address with a host.

    It goes to a browser: a hostile or broken control plane's ``--remote-debugging-port``
    or ``javascript:`` must never become a browser's switch or a page's script.
    Plain http only where the control plane itself is on loopback (a local test or demo).
    """
    parts = urlsplit(url)
    cleartext_ok = urlsplit(control_plane_url).hostname in LOOPBACK_HOSTS
    schemes = ("https", "http") if cleartext_ok else ("https",)
    try:
        host = parts.hostname
    except ValueError:
        host = None
    if (
        parts.scheme not in schemes
        or not host
        or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url)
    ):
        raise CallFailed(
            FailureCode.CONTROL_PLANE_ERROR,
            "The control plane's authorization URL is not an absolute https address with a "
            "host, so it was not handed to a browser.",
        )


def _unguessable() -> str:
    return "unused-" + secrets.token_urlsafe(32)
