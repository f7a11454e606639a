"""The Python API for desktop tools: ``Bridge`` and ``AsyncBridge``, twins over one core.

What does no I/O (building requests, reading answers, mapping refusals to errors, the
wait loop) is written once: ``_Core`` and the ``_wait_flow`` generator, which yields
each call it wants made and each pause it wants taken. ``Bridge`` drives it with a
blocking socket, ``AsyncBridge`` with asyncio's own streams: no thread per call, and a
cancelled await leaves nothing blocked behind it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, overload
from urllib.parse import parse_qs, quote, urlsplit

from bridge.client.autostart import ensure_daemon
from bridge.client.browser import open_url
from bridge.client.transport import Answer, AsyncControlClient, ControlClient
from bridge.errors import BridgeError, ControlPlaneRefused, DaemonUnavailable, UsageError
from bridge.paths import Paths, default_paths

if TYPE_CHECKING:
    from typing import Self

TERMINAL = frozenset({"succeeded", "failed", "denied", "expired", "cancelled"})
LOOPBACK_NAMES = {"127.0.0.1", "::1", "localhost"}
# The daemon answers a long-poll after at most this long; a slice asks for no more.
MAX_WAIT_SLICE = 300.0
# How long past the TTL to wait for the daemon's own word that the login expired.
EXPIRY_MARGIN = 2.0
# How long a wait rides out a daemon that went away (a restart), asking again meanwhile.
RECONNECT_SECONDS = 30.0
RECONNECT_PAUSE = 0.2
# How long past its deadline a wait stays for a login that is still forwarding: the
# daemon bounds a forward well within this, so only a broken daemon reaches it.
FORWARDING_GRACE = 120.0


@dataclass(frozen=True, slots=True)
class _LoginFields:
    id: str
    provider_id: str
    status: str
    redirect_uri: str
    created_at: str
    expires_at: str
    result: dict[str, Any] | None = None
    auth_url: str | None = None

    @property
    def terminal(self) -> bool:
        """True once the login has its outcome."""
        return self.status in TERMINAL

    @property
    def token(self) -> str | None:
        """The provider's token the control plane returned (Agent Auth), or None."""
        token = (self.result or {}).get("token")
        return token if isinstance(token, str) else None

    def to_json(self) -> dict[str, Any]:
        """Return the contract's login object (never ``auth_url``: it holds the state)."""
        return {
            "id": self.id,
            "provider_id": self.provider_id,
            "status": self.status,
            "redirect_uri": self.redirect_uri,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "result": self.result,
        }


@dataclass(frozen=True, slots=True)
class Login(_LoginFields):
    """A login as the daemon last described it; ``wait()`` returns a newer one."""

    bridge: Bridge = field(kw_only=True, repr=False, compare=False)

    def wait(self, timeout: float | None = None) -> Login:
        """Block until the login ends (or ``timeout`` runs out); return it as it then is."""
        return self.bridge.wait(self, timeout=timeout)


@dataclass(frozen=True, slots=True)
class AsyncLogin(_LoginFields):
    """A login from ``AsyncBridge``: the same fields, and ``await login.wait()``."""

    bridge: AsyncBridge = field(kw_only=True, repr=False, compare=False)

    async def wait(
        self,
        timeout: float | None = None,  # noqa: ASYNC109  # the contract's name; a wait that runs out returns
    ) -> AsyncLogin:
        """Wait until the login ends (or ``timeout`` runs out); return it as it then is."""
        return await self.bridge.wait(self, timeout=timeout)


# -- what the twins share ----------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """A request the flow wants made on the control socket."""

    method: str
    path: str
    body: Any = None
    timeout: float = 10.0


@dataclass(frozen=True)
class Pause:
    """A pause the flow wants taken before it goes on."""

    seconds: float


Step = Call | Pause


def _wait_flow(
    login: dict[str, Any],
    *,
    timeout: float | None,
    tick: float | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> Generator[Step, Answer | None, dict[str, Any]]:
    """Long-poll a login until it ends; ride out a restart of the daemon. Return the login."""
    started = time.monotonic()
    expires = epoch_of(login["expires_at"])
    # Past the TTL the daemon expires the login itself; the margin lets us see that answer.
    deadline = started + (
        timeout if timeout is not None else max(0.0, expires - time.time()) + EXPIRY_MARGIN
    )
    lost_since: float | None = None
    asked_once = False
    while login["status"] not in TERMINAL:
        remaining = deadline - time.monotonic()
        if (
            remaining <= 0
            and timeout is None
            and login["status"] == "forwarding"
            and remaining > -FORWARDING_GRACE
        ):
            # A redirect that came just in time: the daemon bounds its forward, so waiting
            # on for the outcome cannot hang, and giving up would misreport it.
            remaining = tick or 1.0
        elif remaining <= 0 and asked_once:
            break
        remaining = max(remaining, 0.0)  # even a wait that has run out asks once
        if on_progress is not None:
            on_progress(login)
        slice_ = min(remaining, tick or MAX_WAIT_SLICE)
        asked = time.monotonic()
        try:
            answer = yield Call(
                "GET",
                f"/v1/logins/{quote(login['id'], safe='')}?wait={slice_:.3f}",
                None,
                slice_ + 30,
            )
        except DaemonUnavailable:
            # The daemon went away: a restart keeps every pending login, so ask again.
            lost_since = lost_since or time.monotonic()
            if time.monotonic() - lost_since > RECONNECT_SECONDS:
                raise
            yield Pause(RECONNECT_PAUSE)
            continue
        lost_since = None
        asked_once = True
        assert answer is not None
        if answer.status != 200:
            raise BridgeError(f"the daemon lost the login {login['id']}: {answer.message}")
        login = answer.body
        if login["status"] not in TERMINAL and time.monotonic() - asked < slice_ / 2:
            # Answered early yet not ended: the daemon is stopping. Do not spin meanwhile.
            yield Pause(RECONNECT_PAUSE)
    return login


class _Core:
    """What ``Bridge`` and ``AsyncBridge`` share and that does no I/O."""

    def __init__(self, paths: Paths | None, client_name: str | None = None) -> None:
        self.paths = paths or default_paths()
        self.daemon_url = ""
        self.client_name = client_name

    def login_request(
        self,
        provider_id: str,
        scopes: list[str],
        *,
        user_id: str | None,
        agent_id: str | None,
        force_new: bool,
        ttl_seconds: int,
    ) -> Call:
        body: dict[str, Any] = {
            "provider_id": provider_id,
            "scopes": list(scopes),
            "force_new": force_new,
            "ttl_seconds": ttl_seconds,
        }
        if user_id is not None:
            body["user_id"] = user_id
        if agent_id is not None:
            body["agent_id"] = agent_id
        if self.client_name is not None:
            body["client_name"] = self.client_name
        # authenticate, then register: the control plane's time counts too.
        return Call("POST", "/v1/logins", body, timeout=90)

    def expect_request(
        self,
        provider_id: str,
        *,
        state: str | None,
        auth_url: str | None,
        ttl_seconds: int,
        issuer: str | None,
        require_issuer: bool,
    ) -> Call:
        if (state is None) == (auth_url is None):
            raise UsageError("give exactly one of state and auth_url")
        if auth_url is not None:
            state, redirect_uri = state_from_auth_url(auth_url)
            if redirect_uri is not None:
                check_redirect_uri(
                    redirect_uri, daemon_url=self.daemon_url, provider_id=provider_id
                )
        body: dict[str, Any] = {
            "provider_id": provider_id,
            "state": state,
            "ttl_seconds": ttl_seconds,
        }
        if issuer is not None:
            body["expected_issuer"] = issuer
            body["require_issuer"] = require_issuer
        if self.client_name is not None:
            body["client_name"] = self.client_name
        return Call("POST", "/v1/logins", body)

    @staticmethod
    def login_path(login_id: str) -> str:
        return f"/v1/logins/{quote(login_id, safe='')}"

    @staticmethod
    def checked(answer: Answer, *, expected: tuple[int, ...] = (200, 201)) -> dict[str, Any]:
        """Return the answer's body, or raise the error its refusal means."""
        if answer.status in expected and isinstance(answer.body, dict):
            return answer.body
        body = answer.body if isinstance(answer.body, dict) else {}
        if answer.status == 502:
            raise ControlPlaneRefused(
                answer.message,
                error=str(body.get("error", "control_plane_error")),
                control_plane_status=body.get("control_plane_status"),
            )
        if answer.status == 503:
            raise BridgeError(f"the daemon cannot take this now: {answer.message}")
        if answer.status == 404:
            raise LoginNotFound(answer.message)
        if answer.status in (400, 409, 422):
            raise UsageError(f"the daemon refused: {answer.message}")
        raise BridgeError(f"the daemon refused: {answer.message}")


class LoginNotFound(UsageError):
    """The daemon knows no such login (or no pending login has that state)."""


def state_from_auth_url(auth_url: str) -> tuple[str, str | None]:
    """Return the authorization URL's state and redirect_uri, refusing a URL without state."""
    parts = urlsplit(auth_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError("the authorization URL is not an http(s) URL")
    query = parse_qs(parts.query, keep_blank_values=True)
    states = query.get("state", [])
    if len(states) != 1 or not states[0]:
        raise UsageError(
            "the authorization URL has no state parameter"
            if not states or not states[0]
            else "the authorization URL has more than one state parameter"
        )
    redirects = query.get("redirect_uri", [])
    return states[0], redirects[0] if redirects else None


def check_redirect_uri(redirect_uri: str, *, daemon_url: str, provider_id: str) -> None:
    """Refuse a redirect_uri that would send the browser anywhere but this daemon's callback."""
    from bridge.client.terminal import printable

    port = urlsplit(daemon_url).port
    path = f"/callback/{quote(provider_id, safe='')}"
    expected = f"{daemon_url}{path}"
    found = urlsplit(redirect_uri)
    try:
        found_port = found.port
    except ValueError:
        found_port = None
    if (
        found.scheme == "http"
        and (found.hostname or "") in LOOPBACK_NAMES
        and found_port == port
        and found.path == path
    ):
        return
    if found.path != path and found_port == port:
        hint = (
            "The provider id differs: pass the id the redirect_uri names to --provider, "
            "or register this address for it."
        )
    else:
        hint = (
            "Register the expected address as the redirect URI (the provider's app settings "
            "and the control plane's flow), or run the daemon on that port with --port."
        )
    raise UsageError(
        "the authorization URL's redirect_uri does not point at this oauth-bridge:\n"
        f"  expected: {expected}\n"
        f"  found:    {printable(redirect_uri)}\n" + hint
    )


def epoch_of(rfc3339: str) -> float:
    """Return the Unix time of an RFC 3339 timestamp of the login object."""
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


# -- the blocking twin -------------------------------------------------------------


class Bridge:
    """The running oauth-bridge daemon, for a blocking program (a CLI, a script)."""

    def __init__(
        self, start: bool = True, *, client_name: str | None = None, paths: Paths | None = None
    ) -> None:
        """Find the running daemon, starting one if none runs (unless ``start=False``).

        ``client_name`` is how the browser's page names your tool ("return to ...").
        """
        self._core = _Core(paths, client_name)
        info = ensure_daemon(self._core.paths, start=start)
        self._core.daemon_url = str(info["url"])
        self._client = ControlClient(self._core.paths.control_socket)
        # The daemon's GET /v1/status when it was found: its version, credentials' sources.
        self.daemon_status: dict[str, Any] = info

    @property
    def url(self) -> str:
        """The daemon's base URL, ``http://127.0.0.1:PORT``."""
        return self._core.daemon_url

    @property
    def paths(self) -> Paths:
        """Where the daemon's files are (its control socket among them)."""
        return self._core.paths

    def login(
        self,
        provider_id: str,
        scopes: list[str],
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        force_new: bool = False,
        ttl_seconds: int = 600,
        open_browser: bool = False,
    ) -> Login:
        """Have the daemon start an Agent Auth login; open its URL if asked."""
        call = self._core.login_request(
            provider_id,
            scopes,
            user_id=user_id,
            agent_id=agent_id,
            force_new=force_new,
            ttl_seconds=ttl_seconds,
        )
        login = self._login(self._checked(call))
        if open_browser and login.auth_url is not None and open_url(login.auth_url):
            login = replace(login, auth_url=None)
        return login

    @overload
    def expect(
        self,
        provider_id: str,
        *,
        state: str,
        ttl_seconds: int = 600,
        issuer: str | None = None,
        require_issuer: bool = False,
    ) -> Login: ...

    @overload
    def expect(
        self,
        provider_id: str,
        *,
        auth_url: str,
        ttl_seconds: int = 600,
        issuer: str | None = None,
        require_issuer: bool = False,
        open_browser: bool = False,
    ) -> Login: ...

    def expect(
        self,
        provider_id: str,
        *,
        state: str | None = None,
        auth_url: str | None = None,
        ttl_seconds: int = 600,
        issuer: str | None = None,
        require_issuer: bool = False,
        open_browser: bool = False,
    ) -> Login:
        """Register a login for a state the tool got itself (or the URL that carries it)."""
        call = self._core.expect_request(
            provider_id,
            state=state,
            auth_url=auth_url,
            ttl_seconds=ttl_seconds,
            issuer=issuer,
            require_issuer=require_issuer,
        )
        login = self._login(self._checked(call))
        if open_browser and auth_url is not None and not open_url(auth_url):
            login = replace(login, auth_url=auth_url)  # not opened: the caller shows it
        return login

    def get(self, login_id: str) -> Login:
        """Return the login as the daemon describes it now."""
        return self._login(self._checked(Call("GET", self._core.login_path(login_id))))

    def wait(
        self,
        login: Login,
        *,
        timeout: float | None = None,
        tick: float | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> Login:
        """Block until ``login`` ends (or ``timeout`` runs out); return it as it then is."""
        flow = _wait_flow(login.to_json(), timeout=timeout, tick=tick, on_progress=on_progress)
        return replace(self._login(self._drive(flow)), auth_url=login.auth_url)

    def cancel(self, login_id: str) -> Login:
        """Cancel a pending login; a login that already ended is returned as it ended."""
        return self.cancel_if_pending(login_id)[1]

    def cancel_if_pending(self, login_id: str) -> tuple[bool, Login]:
        """Cancel a pending login; say whether this call cancelled it, and return it."""
        answer = self._request(Call("DELETE", self._core.login_path(login_id)))
        if answer.status == 409 and isinstance(answer.body, dict) and "login" in answer.body:
            return False, self._login(answer.body["login"])
        return True, self._login(self._core.checked(answer))

    def complete(self, url: str) -> Login:
        """Finish a login from the address a browser elsewhere ended on (the paste fallback).

        Raises LoginNotFound when no pending login has the address's state.
        """
        return self._login(self._checked(Call("POST", "/v1/callbacks", {"url": url}, 300)))

    def allow_loopback(self, provider_id: str, *, dry_run: bool = False) -> dict[str, Any]:
        """Add this daemon's callback to the provider's allowed redirect URIs."""
        path = f"/v1/providers/{quote(provider_id, safe='')}/allow-loopback"
        return self._checked(Call("POST", path, {"dry_run": dry_run}, 60))

    def _login(self, body: dict[str, Any]) -> Login:
        return Login(**_fields(body), bridge=self)

    def _request(self, call: Call) -> Answer:
        return self._client.request(call.method, call.path, call.body, timeout=call.timeout)

    def _checked(self, call: Call) -> dict[str, Any]:
        return self._core.checked(self._request(call))

    def _drive(self, flow: Generator[Step, Answer | None, dict[str, Any]]) -> dict[str, Any]:
        try:
            step = next(flow)
            while True:
                if isinstance(step, Pause):
                    time.sleep(step.seconds)
                    step = flow.send(None)
                    continue
                try:
                    answer = self._request(step)
                except DaemonUnavailable as exc:
                    step = flow.throw(exc)
                    continue
                step = flow.send(answer)
        except StopIteration as done:
            result: dict[str, Any] = done.value
            return result


# -- the asyncio twin ---------------------------------------------------------------


class AsyncBridge:
    """The running oauth-bridge daemon, for an asyncio program: every call is a coroutine."""

    def __init__(
        self, start: bool = True, *, client_name: str | None = None, paths: Paths | None = None
    ) -> None:
        """Prepare to find the daemon (on the first call), starting one unless ``start=False``."""
        self._core = _Core(paths, client_name)
        self._start = start
        self._client = AsyncControlClient(self._core.paths.control_socket)
        # The daemon's GET /v1/status once it was found (on the first call).
        self.daemon_status: dict[str, Any] = {}

    @property
    def url(self) -> str:
        """The daemon's base URL, once the first call found it ('' before)."""
        return self._core.daemon_url

    @property
    def paths(self) -> Paths:
        """Where the daemon's files are (its control socket among them)."""
        return self._core.paths

    async def _ready(self) -> None:
        if self._core.daemon_url:
            return
        import asyncio

        # Finding the daemon, or starting one (spawn, then poll for its readiness), runs
        # once per AsyncBridge, in a thread, bounded by autostart's own deadline; every
        # call after it is on asyncio's own sockets.
        info = await asyncio.to_thread(ensure_daemon, self._core.paths, start=self._start)
        self._core.daemon_url = str(info["url"])
        self.daemon_status = info

    async def __aenter__(self) -> Self:
        await self._ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def login(
        self,
        provider_id: str,
        scopes: list[str],
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        force_new: bool = False,
        ttl_seconds: int = 600,
        open_browser: bool = False,
    ) -> AsyncLogin:
        """Have the daemon start an Agent Auth login; open its URL if asked."""
        await self._ready()
        call = self._core.login_request(
            provider_id,
            scopes,
            user_id=user_id,
            agent_id=agent_id,
            force_new=force_new,
            ttl_seconds=ttl_seconds,
        )
        login = self._login(await self._checked(call))
        if open_browser and login.auth_url is not None and open_url(login.auth_url):
            login = replace(login, auth_url=None)
        return login

    @overload
    async def expect(
        self,
        provider_id: str,
        *,
        state: str,
        ttl_seconds: int = 600,
        issuer: str | None = None,
        require_issuer: bool = False,
    ) -> AsyncLogin: ...

    @overload
    async def expect(
        self,
        provider_id: str,
        *,
        auth_url: str,
        ttl_seconds: int = 600,
        issuer: str | None = None,
        require_issuer: bool = False,
        open_browser: bool = False,
    ) -> AsyncLogin: ...

    async def expect(
        self,
        provider_id: str,
        *,
        state: str | None = None,
        auth_url: str | None = None,
        ttl_seconds: int = 600,
        issuer: str | None = None,
        require_issuer: bool = False,
        open_browser: bool = False,
    ) -> AsyncLogin:
        """Register a login for a state the tool got itself (or the URL that carries it)."""
        await self._ready()
        call = self._core.expect_request(
            provider_id,
            state=state,
            auth_url=auth_url,
            ttl_seconds=ttl_seconds,
            issuer=issuer,
            require_issuer=require_issuer,
        )
        login = self._login(await self._checked(call))
        if open_browser and auth_url is not None and not open_url(auth_url):
            login = replace(login, auth_url=auth_url)
        return login

    async def get(self, login_id: str) -> AsyncLogin:
        """Return the login as the daemon describes it now."""
        await self._ready()
        return self._login(await self._checked(Call("GET", self._core.login_path(login_id))))

    async def wait(
        self,
        login: AsyncLogin,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  # the contract's name; a wait that runs out returns
    ) -> AsyncLogin:
        """Wait until ``login`` ends (or ``timeout`` runs out); return it as it then is."""
        await self._ready()
        flow = _wait_flow(login.to_json(), timeout=timeout)
        return replace(self._login(await self._drive(flow)), auth_url=login.auth_url)

    async def cancel(self, login_id: str) -> AsyncLogin:
        """Cancel a pending login; a login that already ended is returned as it ended."""
        return (await self.cancel_if_pending(login_id))[1]

    async def cancel_if_pending(self, login_id: str) -> tuple[bool, AsyncLogin]:
        """Cancel a pending login; say whether this call cancelled it, and return it."""
        await self._ready()
        answer = await self._request(Call("DELETE", self._core.login_path(login_id)))
        if answer.status == 409 and isinstance(answer.body, dict) and "login" in answer.body:
            return False, self._login(answer.body["login"])
        return True, self._login(self._core.checked(answer))

    async def complete(self, url: str) -> AsyncLogin:
        """Finish a login from the address a browser elsewhere ended on (the paste fallback)."""
        await self._ready()
        return self._login(await self._checked(Call("POST", "/v1/callbacks", {"url": url}, 300)))

    async def allow_loopback(self, provider_id: str, *, dry_run: bool = False) -> dict[str, Any]:
        """Add this daemon's callback to the provider's allowed redirect URIs."""
        await self._ready()
        path = f"/v1/providers/{quote(provider_id, safe='')}/allow-loopback"
        return await self._checked(Call("POST", path, {"dry_run": dry_run}, 60))

    def _login(self, body: dict[str, Any]) -> AsyncLogin:
        return AsyncLogin(**_fields(body), bridge=self)

    async def _request(self, call: Call) -> Answer:
        return await self._client.request(call.method, call.path, call.body, timeout=call.timeout)

    async def _checked(self, call: Call) -> dict[str, Any]:
        return self._core.checked(await self._request(call))

    async def _drive(self, flow: Generator[Step, Answer | None, dict[str, Any]]) -> dict[str, Any]:
        import asyncio

        try:
            step = next(flow)
            while True:
                if isinstance(step, Pause):
                    await asyncio.sleep(step.seconds)
                    step = flow.send(None)
                    continue
                try:
                    answer = await self._request(step)
                except DaemonUnavailable as exc:
                    step = flow.throw(exc)
                    continue
                step = flow.send(answer)
        except StopIteration as done:
            result: dict[str, Any] = done.value
            return result


def _fields(body: dict[str, Any]) -> dict[str, Any]:
    names = (
        "id",
        "provider_id",
        "status",
        "redirect_uri",
        "created_at",
        "expires_at",
        "result",
        "auth_url",
    )
    return {name: body.get(name) for name in names}
