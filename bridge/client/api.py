"""The Python API for desktop tools: ``Bridge`` and ``AsyncBridge``, twins over one core.

What does no I/O (building requests, reading answers, mapping refusals to errors, the
wait loop) is written once: ``_Core`` and the ``_wait_flow`` generator, which yields
each call it wants made and each pause it wants taken. ``Bridge`` drives it with a
blocking socket, ``AsyncBridge`` with asyncio's own streams: no thread per call, and a
cancelled await leaves nothing blocked behind it.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload
from urllib.parse import parse_qs, quote, urlsplit

from bridge.client.autostart import ensure_daemon
from bridge.client.browser import open_url
from bridge.client.flow import (
    REACH_TIMEOUT_SECONDS,
    TERMINAL,
    Call,
    Fallback,
    Open,
    Pause,
    Revive,
    Step,
    Waited,
    secret_header,
    wait_flow,
)
from bridge.client.redirect_file import write_redirect_file
from bridge.client.transport import Answer, AsyncControlClient, ControlClient
from bridge.errors import BridgeError, ControlPlaneRefused, DaemonUnavailable, UsageError
from bridge.paths import Paths, default_paths
from bridge.platform import effective_uid, tcp_listener_owner

if TYPE_CHECKING:
    from typing import Self

LoginStatus = Literal[
    "pending", "forwarding", "succeeded", "failed", "denied", "expired", "cancelled"
]
CallbackMode = Literal["loopback", "hosted"]
# How often a wait looks at who holds its callback port (a /proc read).
PORT_CHECK_SECONDS = 1.0
# The longest a start may take by default: the daemon bounds LangSmith's answer well within.
START_SECONDS = 90.0
# What only the login's creator reads; never in a repr.
CREATOR_ONLY = ("token", "control_plane_body")
LOOPBACK_NAMES = {"127.0.0.1", "::1", "localhost"}


@dataclass(frozen=True, slots=True, repr=False)
class _LoginFields:
    id: str
    provider_id: str
    status: LoginStatus
    redirect_uri: str
    created_at: str
    expires_at: str
    result: dict[str, Any] | None = None
    callback: CallbackMode = "loopback"
    browser_seen: bool = False
    credentials: Literal["caller", "daemon"] = "daemon"
    # The authorization URL (it holds the state): from the 201 answer only.
    auth_url: str | None = None
    # The address to open or print: the one-time trampoline of a loopback login, the
    # authorization URL of a hosted one. None once the login needs no browser.
    open_url: str | None = None
    # Whether a browser was launched with open_url.
    browser_opened: bool = False
    # What shows the daemon that this process started the login (X-Login-Secret).
    secret: str | None = None
    # The check of the auto rule by evidence: None unless auto chose loopback.
    reach: Fallback | None = field(default=None, compare=False)

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
        """Return the contract's login object (never ``auth_url`` nor the secret)."""
        return {
            "id": self.id,
            "provider_id": self.provider_id,
            "status": self.status,
            "redirect_uri": self.redirect_uri,
            "callback": self.callback,
            "browser_seen": self.browser_seen,
            "credentials": self.credentials,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "result": self.result,
        }

    def __repr__(self) -> str:
        # Never the token, the secret or the authorization URL: a repr ends up in logs.
        result = None
        if self.result is not None:
            result = {k: v for k, v in self.result.items() if k not in CREATOR_ONLY}
        return (
            f"{type(self).__name__}(id={self.id!r}, provider_id={self.provider_id!r}, "
            f"status={self.status!r}, callback={self.callback!r}, result={result!r})"
        )


@dataclass(frozen=True, slots=True, repr=False)
class Login(_LoginFields):
    """A login as the daemon last described it; ``wait()`` returns a newer one."""

    bridge: Bridge = field(kw_only=True, compare=False)

    def wait(self, timeout: float | None = None) -> Login:
        """Block until the login ends (or ``timeout`` runs out); return it as it then is."""
        return self.bridge.wait(self, timeout=timeout)


@dataclass(frozen=True, slots=True, repr=False)
class AsyncLogin(_LoginFields):
    """A login from ``AsyncBridge``: the same fields, and ``await login.wait()``."""

    bridge: AsyncBridge = field(kw_only=True, compare=False)

    async def wait(
        self,
        timeout: float | None = None,  # noqa: ASYNC109  # the contract's name; a wait that runs out returns
    ) -> AsyncLogin:
        """Wait until the login ends (or ``timeout`` runs out); return it as it then is."""
        return await self.bridge.wait(self, timeout=timeout)


@dataclass(frozen=True, slots=True)
class Connection:
    """A provider of the control plane, and whether this LangSmith user is connected to it."""

    provider_id: str
    name: str | None
    connected: bool


# -- what the twins share ----------------------------------------------------------


def default_callback(paths: Paths, environ: Mapping[str, str] | None = None) -> Any:
    """Return the callback the environment (OAUTH_BRIDGE_CALLBACK) or the config file names."""
    from bridge.client.settings import tool_settings

    return tool_settings(paths, environ).callback


def caller_credentials(
    *,
    api_key: str | None,
    workspace_id: str | None,
    bearer_token: str | None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Return the control plane's credential headers this caller has, from it or its environment.

    The daemon makes a login with them as this caller's LangSmith user (each header
    replacing its own), whoever started the daemon.
    """
    env = os.environ if environ is None else environ
    api_key = api_key if api_key is not None else env.get("LANGSMITH_API_KEY")
    workspace_id = workspace_id if workspace_id is not None else env.get("LANGSMITH_WORKSPACE_ID")
    bearer_token = (
        bearer_token if bearer_token is not None else env.get("OAUTH_BRIDGE_BEARER_TOKEN")
    )
    headers = {}
    if api_key:
        headers["X-Api-Key"] = api_key.strip()
    if workspace_id:
        headers["X-Tenant-Id"] = workspace_id.strip()
    if bearer_token:
        headers["Authorization"] = f"Bearer {bearer_token.strip()}"
    return headers


L = TypeVar("L", bound=_LoginFields)


class _Core:
    """What ``Bridge`` and ``AsyncBridge`` share and that does no I/O."""

    def __init__(
        self,
        paths: Paths | None,
        client_name: str | None = None,
        *,
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        self.paths = paths or default_paths()
        self.daemon_url = ""
        self.client_name = client_name
        # Sent with every call: the daemon uses them where a call reaches the control plane.
        self.credentials = dict(credentials or {})

    def headers(self, call: Call) -> dict[str, str]:
        return {**self.credentials, **call.headers}

    def open_in_browser(self, url: str) -> bool:
        """Launch a browser at ``url``, never with a state on its command line."""
        if url.startswith(f"{self.daemon_url}/go/"):
            return open_url(url)  # the one-time trampoline: no state in it
        page = write_redirect_file(url, self.paths.runtime_dir)
        return open_url(page.as_uri())

    def opened(self, login: _LoginFields, *, open_browser: bool) -> dict[str, Any]:
        """Open the login's address if asked; say whether a browser was launched."""
        if not open_browser or login.open_url is None:
            return {}
        return {"browser_opened": self.open_in_browser(login.open_url)}

    def login_request(
        self,
        provider_id: str,
        scopes: list[str],
        *,
        user_id: str | None,
        agent_id: str | None,
        force_new: bool,
        ttl_seconds: int,
        callback: CallbackMode = "loopback",
        timeout: float | None = None,
    ) -> Call:
        if isinstance(scopes, str) or not all(isinstance(s, str) for s in scopes):
            # "openid" would be sent as the scopes o, p, e, n, i, d.
            raise TypeError("scopes must be a list of strings, e.g. ['repo']")
        body: dict[str, Any] = {
            "provider_id": provider_id,
            "scopes": list(scopes),
            "force_new": force_new,
            "ttl_seconds": ttl_seconds,
            "callback": callback,
        }
        if user_id is not None:
            body["user_id"] = user_id
        if agent_id is not None:
            body["agent_id"] = agent_id
        if self.client_name is not None:
            body["client_name"] = self.client_name
        # authenticate, then register: the control plane's time counts too.
        return Call(
            "POST", "/v1/logins", body, timeout=START_SECONDS if timeout is None else timeout
        )

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

    def choose_callback(self, callback: str | None) -> tuple[CallbackMode, bool]:
        """Resolve ``auto`` (or no choice) by where this process runs: one rule for all.

        Return the mode, and whether the rule chose it (then the reach check applies).
        """
        from bridge.client.reach import callback_for, decide, parse_callback

        choice = (
            parse_callback(callback, source="callback")
            if callback is not None
            else default_callback(self.paths)
        )
        mode = callback_for(choice, decide(os.environ))
        return mode, choice in (None, "auto")

    def start(
        self,
        provider_id: str,
        scopes: list[str],
        *,
        user_id: str | None,
        agent_id: str | None,
        force_new: bool,
        ttl_seconds: int,
        callback: str | None,
        timeout: float | None = None,
    ) -> tuple[Call, Call | None]:
        """Return the registration, and the hosted one to fall back on if ``auto`` chose loopback."""
        mode, by_rule = self.choose_callback(callback)
        fields: dict[str, Any] = {
            "user_id": user_id,
            "agent_id": agent_id,
            "force_new": force_new,
            "ttl_seconds": ttl_seconds,
        }
        call = self.login_request(provider_id, scopes, **fields, callback=mode, timeout=timeout)
        hosted = None
        if by_rule and mode == "loopback":
            hosted = self.login_request(provider_id, scopes, **fields, callback="hosted")
        return call, hosted

    def started(
        self,
        login: L,
        *,
        hosted: Call | None,
        open_browser: bool,
        reach_timeout: float,
    ) -> L:
        """Open the new login's address if asked, and arm the reach check where it applies."""
        login = replace(login, **self.opened(login, open_browser=open_browser))
        if hosted is None or login.terminal or login.callback != "loopback":
            return login
        # Not armed (an infinite deadline) until a browser is launched: see arm_reach.
        login = replace(login, reach=Fallback(math.inf, hosted, seconds=reach_timeout))
        if open_browser:
            login = self.arm_reach(login, browser_opened=login.browser_opened)
        return login

    @staticmethod
    def arm_reach(login: L, *, browser_opened: bool) -> L:
        """Start the reach timeout now that a browser was launched (or could not be)."""
        if login.reach is None:
            return login
        # No browser could be opened here after all: LangSmith's page at once.
        wait = login.reach.seconds if browser_opened else 0.0
        armed = replace(login.reach, deadline=time.monotonic() + wait)
        return replace(login, reach=armed, browser_opened=browser_opened)

    @staticmethod
    def port_guard(login: _LoginFields) -> Callable[[], None] | None:
        """Return a check that the login's callback port is still ours (or no one's)."""
        if login.callback != "loopback":
            return None  # the browser goes back to LangSmith's page, not to a port here
        try:
            port = urlsplit(login.redirect_uri).port
        except ValueError:
            port = None
        if port is None:
            return None
        checked = [-math.inf]

        def check() -> None:
            now = time.monotonic()
            if now - checked[0] < PORT_CHECK_SECONDS:
                return
            checked[0] = now
            owner = tcp_listener_owner(port)
            # Root aside (a relay such as docker-proxy), and our own daemon of course.
            if owner is not None and owner not in (effective_uid(), 0):
                raise PortTaken(port=port, uid=owner, login_id=login.id)

        return check

    @staticmethod
    def start_failed(exc: DaemonUnavailable, call: Call) -> BridgeError:
        """Say what a start that got no answer means: past its time, LangSmith did not answer."""
        if not exc.timed_out:
            return exc
        return ControlPlaneRefused(
            f"no answer within {call.timeout:g}s: LangSmith (or the daemon) did not answer, "
            "and nothing was registered",
            error="control_plane_unreachable",
        )

    def cancel_request(self, login: str | _LoginFields) -> Call:
        login_id = login if isinstance(login, str) else login.id
        secret = None if isinstance(login, str) else login.secret
        return Call("DELETE", self.login_path(login_id), headers=secret_header(secret))

    def cancel_answer(self, answer: Answer) -> tuple[bool, dict[str, Any]]:
        """Read a cancel's answer: whether it cancelled, and the login as it now is."""
        if answer.status == 409 and isinstance(answer.body, dict) and "login" in answer.body:
            return False, answer.body["login"]
        return True, self.checked(answer)

    @staticmethod
    def disconnect_request(provider_id: str) -> Call:
        return Call("DELETE", f"/v1/connections/{quote(provider_id, safe='')}", timeout=60)

    @staticmethod
    def newer(login: L, waited: Waited) -> L:
        """Return ``login`` as the wait left it, keeping what only the 201 had."""
        body = waited.login
        if waited.replaced:
            # A hosted login took its place: everything is the new one's.
            return replace(
                login,
                **{name: body[name] for name in _FIELDS if name in body and name not in _KEPT},
                secret=waited.secret,
                open_url=waited.open_url,
                auth_url=waited.auth_url,
                browser_opened=waited.browser_opened,
                reach=None,
            )
        return replace(
            login,
            **{name: body[name] for name in _FIELDS if name in body and name not in _KEPT},
        )

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


class PortTaken(DaemonUnavailable):
    """The login's callback port is held by another local user: the code would reach them."""

    def __init__(self, *, port: int, uid: int, login_id: str) -> None:
        super().__init__(
            f"Do not finish signing in: port {port}, where the provider sends your browser "
            f"back, is held by another user of this computer (uid {uid}), not by "
            f"oauth-bridge, and your code would reach them. The login {login_id} was "
            "cancelled where a daemon could still be reached. On a shared machine, let "
            "systemd hold the port (oauth-bridge install-service --socket)."
        )
        self.port = port
        self.uid = uid
        self.login_id = login_id


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


# -- the blocking twin -------------------------------------------------------------


class Bridge:
    """The running oauth-bridge daemon, for a blocking program (a CLI, a script)."""

    def __init__(
        self,
        start: bool = True,
        *,
        client_name: str | None = None,
        paths: Paths | None = None,
        api_key: str | None = None,
        workspace_id: str | None = None,
        bearer_token: str | None = None,
    ) -> None:
        """Find the running daemon, starting one if none runs (unless ``start=False``).

        ``client_name`` is how the browser's page names your tool ("return to ...").
        ``api_key``, ``workspace_id`` and ``bearer_token`` (by default the environment's
        LANGSMITH_API_KEY, LANGSMITH_WORKSPACE_ID, OAUTH_BRIDGE_BEARER_TOKEN) make each
        login as your LangSmith user, whoever started the daemon.
        """
        self._core = _Core(
            paths,
            client_name,
            credentials=caller_credentials(
                api_key=api_key, workspace_id=workspace_id, bearer_token=bearer_token
            ),
        )
        self._start = start
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

    def open_in_browser(self, url: str) -> bool:
        """Launch a browser at ``url`` (never with a state on its command line); True if one started."""
        return self._core.open_in_browser(url)

    @property
    def client_name(self) -> str | None:
        """How the browser's page names this tool, as given."""
        return self._core.client_name

    def arm_reach(self, login: Login, *, browser_opened: bool) -> Login:
        """For a login opened by the caller itself: start its reach timeout now."""
        return self._core.arm_reach(login, browser_opened=browser_opened)

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
        callback: Literal["auto", "loopback", "hosted"] | None = None,
        reach_timeout: float = REACH_TIMEOUT_SECONDS,
        timeout: float | None = None,
    ) -> Login:
        """Have the daemon start an Agent Auth login; open its address if asked.

        ``callback``: where the browser comes back (default: OAUTH_BRIDGE_CALLBACK or the
        config file's ``callback``, else ``"auto"``, decided by where this process runs).
        With ``auto`` choosing loopback, a browser that has not reached the daemon within
        ``reach_timeout`` seconds makes ``wait()`` switch to a hosted login. ``timeout``
        bounds the start (LangSmith's answer included): past it, ControlPlaneRefused.
        """
        call, hosted = self._core.start(
            provider_id,
            scopes,
            user_id=user_id,
            agent_id=agent_id,
            force_new=force_new,
            ttl_seconds=ttl_seconds,
            callback=callback,
            timeout=timeout,
        )
        try:
            login = self._login(self._checked(call))
        except DaemonUnavailable as exc:
            raise self._core.start_failed(exc, call) from None
        return self._core.started(
            login, hosted=hosted, open_browser=open_browser, reach_timeout=reach_timeout
        )

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
        if auth_url is None:
            return login
        login = replace(login, auth_url=auth_url, open_url=auth_url)
        return replace(login, **self._core.opened(login, open_browser=open_browser))

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
        on_replaced: Callable[[Waited], None] | None = None,
        cancel_on_interrupt: bool = True,
    ) -> Login:
        """Block until ``login`` ends (or ``timeout`` runs out); return it as it then is.

        A KeyboardInterrupt cancels the login (unless ``cancel_on_interrupt`` is False).

        A loopback login that ``auto`` chose and no browser came to within the reach
        timeout is replaced by a hosted one (``on_replaced`` hears of it): the login
        returned is then that one.
        """
        latest = [login]

        def replaced(waited: Waited) -> None:
            latest.append(self._core.newer(login, waited))
            if on_replaced is not None:
                on_replaced(waited)

        flow = wait_flow(
            login.to_json(),
            secret=login.secret,
            timeout=timeout,
            tick=tick,
            on_progress=on_progress,
            on_replaced=replaced,
            fallback=login.reach,
        )
        try:
            return self._core.newer(login, self._drive(flow, self._core.port_guard(login)))
        except PortTaken:
            # Cancelled where a daemon can be reached (or started: on another port, say),
            # so that no later callback completes it.
            with contextlib.suppress(BridgeError):
                ensure_daemon(self._core.paths, start=self._start)
                self.cancel_if_pending(latest[-1])
            raise
        except KeyboardInterrupt:
            if cancel_on_interrupt:
                # Given up on: it must not stay claimable behind us for its whole TTL.
                self.cancel_if_pending(latest[-1])
            raise

    def cancel(self, login: str | Login) -> Login:
        """Cancel a pending login; a login that already ended is returned as it ended."""
        return self.cancel_if_pending(login)[1]

    def cancel_if_pending(self, login: str | Login) -> tuple[bool, Login]:
        """Cancel a pending login; say whether this call cancelled it, and return it."""
        answer = self._request(self._core.cancel_request(login))
        cancelled, body = self._core.cancel_answer(answer)
        return cancelled, self._login(body, secret=getattr(login, "secret", None))

    def complete(self, url: str) -> Login:
        """Finish a login from the address a browser elsewhere ended on (the paste fallback).

        Raises LoginNotFound when no pending login has the address's state.
        """
        return self._login(self._checked(Call("POST", "/v1/callbacks", {"url": url}, 300)))

    def allow_loopback(self, provider_id: str, *, dry_run: bool = False) -> dict[str, Any]:
        """Add this daemon's callback to the provider's allowed redirect URIs."""
        path = f"/v1/providers/{quote(provider_id, safe='')}/allow-loopback"
        return self._checked(Call("POST", path, {"dry_run": dry_run}, 60))

    def connections(self) -> list[Connection]:
        """Return each provider and whether your LangSmith user is connected to it."""
        return _connections(self._checked(Call("GET", "/v1/connections", timeout=60)))

    def disconnect(self, provider_id: str) -> Connection:
        """Revoke your LangSmith user's tokens for ``provider_id``."""
        return _disconnected(self._checked(_Core.disconnect_request(provider_id)))

    def _login(self, body: dict[str, Any], *, secret: str | None = None) -> Login:
        return Login(**_fields(body, secret), bridge=self)

    def _request(self, call: Call) -> Answer:
        return self._client.request(
            call.method,
            call.path,
            call.body,
            timeout=call.timeout,
            headers=self._core.headers(call),
        )

    def _checked(self, call: Call) -> dict[str, Any]:
        return self._core.checked(self._request(call))

    def _drive(
        self, flow: Generator[Step, Any, Waited], guard: Callable[[], None] | None = None
    ) -> Waited:
        try:
            step = next(flow)
            while True:
                if isinstance(step, Pause):
                    time.sleep(step.seconds)
                    step = flow.send(None)
                    continue
                if isinstance(step, Open):
                    step = flow.send(self._core.open_in_browser(step.url))
                    continue
                if isinstance(step, Revive):
                    with contextlib.suppress(DaemonUnavailable):
                        ensure_daemon(self._core.paths, start=self._start)
                    step = flow.send(None)
                    continue
                if guard is not None:
                    guard()
                try:
                    answer = self._request(step)
                except DaemonUnavailable as exc:
                    step = flow.throw(exc)
                    continue
                step = flow.send(answer)
        except StopIteration as done:
            result: Waited = done.value
            return result


# -- the asyncio twin ---------------------------------------------------------------


class AsyncBridge:
    """The running oauth-bridge daemon, for an asyncio program: every call is a coroutine."""

    def __init__(
        self,
        start: bool = True,
        *,
        client_name: str | None = None,
        paths: Paths | None = None,
        api_key: str | None = None,
        workspace_id: str | None = None,
        bearer_token: str | None = None,
    ) -> None:
        """Prepare to find the daemon (on the first call), starting one unless ``start=False``.

        The credentials are ``Bridge``'s: by default the environment's.
        """
        self._core = _Core(
            paths,
            client_name,
            credentials=caller_credentials(
                api_key=api_key, workspace_id=workspace_id, bearer_token=bearer_token
            ),
        )
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
        callback: Literal["auto", "loopback", "hosted"] | None = None,
        reach_timeout: float = REACH_TIMEOUT_SECONDS,
        timeout: float | None = None,  # noqa: ASYNC109  # Bridge.login's, on purpose
    ) -> AsyncLogin:
        """Have the daemon start an Agent Auth login; open its address if asked (``Bridge``'s)."""
        await self._ready()
        call, hosted = self._core.start(
            provider_id,
            scopes,
            user_id=user_id,
            agent_id=agent_id,
            force_new=force_new,
            ttl_seconds=ttl_seconds,
            callback=callback,
            timeout=timeout,
        )
        try:
            login = self._login(await self._checked(call))
        except DaemonUnavailable as exc:
            raise self._core.start_failed(exc, call) from None
        import asyncio

        # Off the loop: a browser command may take a moment to start.
        return await asyncio.to_thread(
            self._core.started,
            login,
            hosted=hosted,
            open_browser=open_browser,
            reach_timeout=reach_timeout,
        )

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
        if auth_url is None:
            return login
        import asyncio

        login = replace(login, auth_url=auth_url, open_url=auth_url)
        return replace(
            login, **await asyncio.to_thread(self._core.opened, login, open_browser=open_browser)
        )

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
        """Wait until ``login`` ends (or ``timeout`` runs out); return it as it then is.

        A wait that is cancelled (its task, or ``asyncio.wait_for`` running out) cancels
        the login; one whose own ``timeout`` runs out leaves it pending.
        """
        await self._ready()
        import asyncio

        latest = [login]

        def replaced(waited: Waited) -> None:
            latest.append(self._core.newer(login, waited))

        flow = wait_flow(
            login.to_json(),
            secret=login.secret,
            timeout=timeout,
            fallback=login.reach,
            on_replaced=replaced,
        )
        try:
            return self._core.newer(login, await self._drive(flow, self._core.port_guard(login)))
        except PortTaken:
            with contextlib.suppress(BridgeError):
                await asyncio.to_thread(ensure_daemon, self._core.paths, start=self._start)
                await self.cancel_if_pending(latest[-1])
            raise
        except (asyncio.CancelledError, KeyboardInterrupt):
            # Cancelled (asyncio.wait_for, a task's cancel) or Ctrl-C: the login goes too.
            with contextlib.suppress(BridgeError):
                await self.cancel_if_pending(latest[-1])
            raise

    async def cancel(self, login: str | AsyncLogin) -> AsyncLogin:
        """Cancel a pending login; a login that already ended is returned as it ended."""
        return (await self.cancel_if_pending(login))[1]

    async def cancel_if_pending(self, login: str | AsyncLogin) -> tuple[bool, AsyncLogin]:
        """Cancel a pending login; say whether this call cancelled it, and return it."""
        await self._ready()
        answer = await self._request(self._core.cancel_request(login))
        cancelled, body = self._core.cancel_answer(answer)
        return cancelled, self._login(body, secret=getattr(login, "secret", None))

    async def complete(self, url: str) -> AsyncLogin:
        """Finish a login from the address a browser elsewhere ended on (the paste fallback)."""
        await self._ready()
        return self._login(await self._checked(Call("POST", "/v1/callbacks", {"url": url}, 300)))

    async def allow_loopback(self, provider_id: str, *, dry_run: bool = False) -> dict[str, Any]:
        """Add this daemon's callback to the provider's allowed redirect URIs."""
        await self._ready()
        path = f"/v1/providers/{quote(provider_id, safe='')}/allow-loopback"
        return await self._checked(Call("POST", path, {"dry_run": dry_run}, 60))

    async def connections(self) -> list[Connection]:
        """Return each provider and whether your LangSmith user is connected to it."""
        await self._ready()
        return _connections(await self._checked(Call("GET", "/v1/connections", timeout=60)))

    async def disconnect(self, provider_id: str) -> Connection:
        """Revoke your LangSmith user's tokens for ``provider_id``."""
        await self._ready()
        return _disconnected(await self._checked(_Core.disconnect_request(provider_id)))

    def _login(self, body: dict[str, Any], *, secret: str | None = None) -> AsyncLogin:
        return AsyncLogin(**_fields(body, secret), bridge=self)

    async def _request(self, call: Call) -> Answer:
        return await self._client.request(
            call.method,
            call.path,
            call.body,
            timeout=call.timeout,
            headers=self._core.headers(call),
        )

    async def _checked(self, call: Call) -> dict[str, Any]:
        return self._core.checked(await self._request(call))

    async def _drive(
        self, flow: Generator[Step, Any, Waited], guard: Callable[[], None] | None = None
    ) -> Waited:
        import asyncio

        try:
            step = next(flow)
            while True:
                if isinstance(step, Pause):
                    await asyncio.sleep(step.seconds)
                    step = flow.send(None)
                    continue
                if isinstance(step, Open):
                    opened = await asyncio.to_thread(self._core.open_in_browser, step.url)
                    step = flow.send(opened)
                    continue
                if isinstance(step, Revive):
                    with contextlib.suppress(DaemonUnavailable):
                        await asyncio.to_thread(ensure_daemon, self._core.paths, start=self._start)
                    step = flow.send(None)
                    continue
                if guard is not None:
                    guard()
                try:
                    answer = await self._request(step)
                except DaemonUnavailable as exc:
                    step = flow.throw(exc)
                    continue
                step = flow.send(answer)
        except StopIteration as done:
            result: Waited = done.value
            return result


# What only the 201 answer carries: a newer description of the login keeps these.
_KEPT = ("auth_url", "open_url")
_FIELDS = (
    "id",
    "provider_id",
    "status",
    "redirect_uri",
    "created_at",
    "expires_at",
    "result",
    "callback",
    "browser_seen",
    "credentials",
    "auth_url",
    "open_url",
)


def _fields(body: dict[str, Any], secret: str | None = None) -> dict[str, Any]:
    fields = {name: body[name] for name in _FIELDS if name in body}
    fields.setdefault("result", None)
    for name in ("id", "provider_id", "status", "redirect_uri", "created_at", "expires_at"):
        fields.setdefault(name, "")
    fields["secret"] = body.get("secret", secret)
    return fields


def _connections(body: dict[str, Any]) -> list[Connection]:
    return [
        Connection(
            provider_id=str(item["provider_id"]),
            name=item.get("name"),
            connected=bool(item["connected"]),
        )
        for item in body.get("connections", [])
    ]


def _disconnected(body: dict[str, Any]) -> Connection:
    return Connection(provider_id=str(body["provider_id"]), name=None, connected=False)
