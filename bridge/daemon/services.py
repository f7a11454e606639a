"""What both listeners share: the logins, the control plane client, and who we are."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import sqlite3
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import aiohttp
from aiohttp import web

from bridge.daemon.agent_auth import AgentAuth
from bridge.daemon.config import Config
from bridge.daemon.control_plane import ControlPlane
from bridge.daemon.logins import Logins
from bridge.daemon.logs import log_location
from bridge.daemon.store import LoginStore
from bridge.daemon.trampoline import Trampolines
from bridge.errors import UsageError
from bridge.paths import Paths

log = logging.getLogger(__name__)


class BrowserChecks:
    """One-time self-test addresses for ``doctor``: was each opened by a browser here?"""

    LIMIT = 16  # a few at a time: they are for a person running doctor

    def __init__(self) -> None:
        self._seen: dict[str, asyncio.Event] = {}

    def issue(self) -> str:
        while len(self._seen) >= self.LIMIT:
            self._seen.pop(next(iter(self._seen)))  # the oldest goes
        token = secrets.token_urlsafe(16)
        self._seen[token] = asyncio.Event()
        return token

    def open(self, token: str) -> bool:
        """Mark ``token`` seen, once; False for one not issued (or already used)."""
        event = self._seen.get(token)
        if event is None or event.is_set():
            return False
        event.set()
        return True

    async def wait_seen(self, token: str, seconds: float) -> bool:
        """Say whether ``token`` was opened, waiting up to ``seconds`` for it if not yet."""
        event = self._seen.get(token)
        if event is None:
            return False
        if event.is_set():
            # Before any wait: asyncio.wait_for(..., 0) times out even on a set event.
            return True
        if seconds <= 0:
            return False
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            return False
        return True


@dataclass
class Services:
    """The daemon's shared parts; the listeners' address is filled in once they are bound."""

    config: Config
    paths: Paths
    logins: Logins
    control_plane: ControlPlane
    agent_auth: AgentAuth
    started_at: float = field(default_factory=time.time)
    url: str = ""  # http://127.0.0.1:PORT, once bound
    allowed_hosts: frozenset[str] = frozenset()
    # Monotonic time of the last request on either listener, for the idle exit.
    last_activity: float = field(default_factory=time.monotonic)
    log_location: str = field(default_factory=log_location)
    browser_checks: BrowserChecks = field(default_factory=BrowserChecks)
    trampolines: Trampolines = field(default_factory=lambda: Trampolines(1000))

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def bound(self, *, hosts: list[str], port: int) -> None:
        """Record the bound address: it makes redirect URIs and the Host check."""
        primary = "127.0.0.1" if "127.0.0.1" in hosts or not hosts else hosts[0]
        self.url = f"http://{_authority(primary)}:{port}"
        self.allowed_hosts = frozenset(
            {f"{_authority(h)}:{port}" for h in hosts} | {f"localhost:{port}"}
        )

    def redirect_uri(self, provider_id: str) -> str:
        return f"{self.url}/callback/{quote(provider_id, safe='')}"

    def trampoline_url(self, token: str) -> str:
        return f"{self.url}/go/{token}"

    @property
    def callback_wait_seconds(self) -> float:
        """Bound a callback's wait for its forward by the forward's own worst case.

        An Agent Auth login may wait as long again for the control plane's confirmation.
        """
        settings = self.config.settings
        return 2 * settings.forward_deadline_seconds + settings.request_timeout_seconds


def _authority(host: str) -> str:
    return f"[{host}]" if ":" in host else host


SERVICES = web.AppKey("services", Services)
KEEPALIVE_SECONDS = 4.0


def proxy_for(url: str) -> str | None:
    """Return the proxy the environment names for ``url`` (HTTPS_PROXY, NO_PROXY...), if any."""
    parts = urlsplit(url)
    if parts.scheme == "http" and _loopback(parts.hostname or ""):
        # Plain http is allowed only to a control plane on this machine: reached through
        # a proxy, it would carry the API key across the network in cleartext.
        return None
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def credentials_fingerprint(config: Config) -> str:
    """Fingerprint the daemon's credentials together: which LangSmith user it calls as."""
    from bridge.fingerprint import fingerprint

    credentials = config.credentials
    parts = (credentials.api_key, credentials.bearer_token, credentials.workspace_id)
    return fingerprint("\0".join(part or "" for part in parts))


def services(app: web.Application) -> Services:
    return app[SERVICES]


@asynccontextmanager
async def open_services(config: Config, paths: Paths) -> AsyncIterator[Services]:
    """Open the store and the control plane session; close both, in order, on the way out.

    A context manager rather than an app's cleanup_ctx: the browser app and the control
    app share these, and neither should own what the other still uses at shutdown.
    """
    settings = config.settings
    try:
        store = LoginStore(
            paths.store_file,
            retention_seconds=settings.retention_seconds,
            pending_limit=settings.pending_limit,
        )
    except sqlite3.Error as exc:
        raise UsageError(f"cannot open the login store {paths.store_file}: {exc}") from None
    try:
        logins = Logins(store, daemon_fingerprint=credentials_fingerprint(config))
        recovered = store.recover_interrupted(logins.clock())
        if recovered:
            log.warning(
                "%d login(s) were being forwarded when oauth-bridge last stopped; they are "
                "now failed (interrupted) and will not be resent",
                recovered,
            )
        timeout = aiohttp.ClientTimeout(
            total=settings.request_timeout_seconds,
            connect=settings.connect_timeout_seconds,
        )
        # HTTPS_PROXY and NO_PROXY are read once, here, rather than by trust_env=True on
        # every request (two thread hops per forward); SSL_CERT_FILE and SSL_CERT_DIR work
        # through OpenSSL's default paths, which aiohttp's default context loads.
        # A kept-alive connection is dropped after 4 s idle, below the 5 s of uvicorn's
        # default (FastAPI's server) and of common proxies: a forward never goes out on a
        # connection the other side is closing at that moment.
        # limit=0: each pending Agent Auth login holds one long-poll to the control plane;
        # with aiohttp's default pool of 100, the 101st pending login made every forward
        # wait for a free connection until its connect timed out. The pending limit bounds
        # the pool instead (and the open-file limit is raised to fit).
        connector = aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_SECONDS, limit=0)
        async with aiohttp.ClientSession(
            timeout=timeout, trust_env=False, raise_for_status=False, connector=connector
        ) as session:
            control_plane = ControlPlane(
                session=session,
                base_url=str(settings.control_plane_url),
                credentials=config.credentials,
                deadline_seconds=settings.forward_deadline_seconds,
                proxy=proxy_for(str(settings.control_plane_url)),
            )
            logins.start()
            bridge: Services

            def redirect_uri(provider_id: str) -> str:
                return bridge.redirect_uri(provider_id)

            agent_auth = AgentAuth(logins, control_plane, redirect_uri=redirect_uri)
            bridge = Services(
                config=config,
                paths=paths,
                logins=logins,
                control_plane=control_plane,
                agent_auth=agent_auth,
                trampolines=Trampolines(settings.pending_limit),
            )
            try:
                yield bridge
            finally:
                await agent_auth.close()
                logins.stop()
    finally:
        store.close()
