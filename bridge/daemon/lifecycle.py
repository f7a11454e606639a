"""The daemon's lifecycle: one per user, listeners up, readiness told, clean shutdown."""

from __future__ import annotations

import asyncio
import errno
import functools
import gc
import ipaddress
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import IO, Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from bridge import __version__
from bridge.daemon.browser import SECURITY_HEADERS, create_browser_app
from bridge.daemon.config import Config
from bridge.daemon.control_api import ControlRunner, create_control_app
from bridge.daemon.control_site import control_site
from bridge.daemon.listeners import Listeners, bind_control, bind_http
from bridge.daemon.logs import AccessLogger, BadRequestLines, client_fault, printable
from bridge.daemon.pages import render
from bridge.daemon.services import Services, open_services
from bridge.daemon.systemd import Notifier
from bridge.errors import BridgeError, DaemonUnavailable, UsageError
from bridge.paths import (
    Paths,
    ensure_private_dir,
    ensure_state_dir,
    read_daemon_json,
    write_daemon_json,
)
from bridge.platform import SERVICE_MANAGER, service_sockets, stop_signals, try_lock
from bridge.platform import harden_process as system_harden_process

log = logging.getLogger(__name__)

# The TCP port's caps. Unbounded, stalled request bodies of 1 MB on 1000 connections took
# the daemon to 1.29 GB (and it kept 1.04 GB after they closed). A browser opens a few
# connections to a host and a whole desktop a few dozen: 256 at once is ample for
# callbacks, and bounds what a flood may hold.
MAX_CONNECTIONS = 256
# A callback is a GET, or a form POST of a code, a state and a few parameters
# (response_mode=form_post): a few KB. What is past this is refused with a 413 page
# before it is read (Content-Length), or once this much was read (chunked).
MAX_BODY_BYTES = 64 * 1024
# How long a connection refused at the cap has to read its 503 before it is closed; and
# how long the rest of a request body we answered without reading (a 413) is read and
# dropped, so that the browser reads the answer rather than a reset (aiohttp's default,
# 10 s, kept each connection of a flood of stalled bodies for that long).
LINGER_SECONDS = 1.0
# So many connections at once only a flood opens: once they are down to a few, what the
# flood took is handed back (release_memory). A flood's exceptions hold their frames and
# so the bodies read into them, in cycles that the collector may not look at for long,
# and glibc keeps freed heap in the middle of its arena: 1.04 GB stayed after F3's flood.
FLOOD_CONNECTIONS = 64
CALM_CONNECTIONS = 4
CALM_CHECK_SECONDS = 1.0


def acquire_daemon_locks(paths: Paths) -> list[IO[str]]:
    """Hold the flocks for the daemon's life; a second daemon exits 3.

    One lock guards the runtime dir (daemon.json, control.sock), the other the login
    store: two daemons with their own runtime dirs must still not share one store.
    """
    held: list[IO[str]] = []
    try:
        if not _flock(paths.lock_file, held):
            info = read_daemon_json(paths.daemon_json) or {}
            where = f" at {info['url']} (pid {info.get('pid')})" if info.get("url") else ""
            raise DaemonUnavailable(
                f"oauth-bridge is already running{where}; "
                "'oauth-bridge status' shows it, and one daemon serves all your tools"
            )
        if not _flock(paths.store_lock_file, held):
            raise DaemonUnavailable(
                f"another oauth-bridge, with another runtime dir, uses the login store in "
                f"{paths.state_dir}; stop it, or give this one its own OAUTH_BRIDGE_STATE_DIR"
            )
    except BaseException:
        for handle in held:
            handle.close()
        raise
    return held


def _flock(path: Path, held: list[IO[str]]) -> bool:
    try:
        handle = path.open("a+", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot open the lock file {path}: {exc.strerror}") from None
    if not try_lock(handle):
        handle.close()
        return False
    held.append(handle)
    return True


# Where the sockets a service manager hands us are configured, and how they should read.
_SOCKETS_SETTING = {
    "systemd": ("ListenStream= in oauth-bridge.socket", "127.0.0.1:PORT and [::1]:PORT"),
    "launchd": (
        "Sockets in ~/Library/LaunchAgents/oauth-bridge.plist",
        "SockNodeName 127.0.0.1 and ::1",
    ),
}


def open_listeners(config: Config, paths: Paths) -> Listeners:
    """Adopt the sockets systemd or launchd holds for us when it passed some, else bind our own."""
    passed = service_sockets()
    settings = config.settings
    manager = SERVICE_MANAGER
    setting, shape = _SOCKETS_SETTING.get(manager, ("its socket settings", "loopback only"))
    if passed:
        http = passed.get("http", [])
        if not http:
            raise DaemonUnavailable(f"{manager} passed no TCP socket named 'http'")
        for sock in http:
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                raise UsageError(
                    f"{manager} passed a socket named 'http' that is not a TCP socket: fix "
                    f"{setting} ({shape})"
                )
            address = str(sock.getsockname()[0])
            if not ipaddress.ip_address(address).is_loopback:
                # An edited unit (ListenStream=0.0.0.0:8765) must not put logins on the LAN.
                raise UsageError(
                    f"{manager} passed a socket on {address}, which is not loopback: "
                    f"oauth-bridge listens on 127.0.0.1 and ::1 only; fix {setting}"
                )
        control = passed.get("control", [])
        hosts = [str(s.getsockname()[0]) for s in http]
        port = int(http[0].getsockname()[1])
        if settings.port not in (0, port):
            log.warning(
                "%s passed sockets on port %d, but the configured port is %d: callbacks "
                "are served on %d; run 'oauth-bridge install-service --socket --enable' again "
                "to move its sockets to the configured port",
                manager,
                port,
                settings.port,
                port,
            )
        for sock in http:
            sock.setblocking(False)
        if control:
            control[0].setblocking(False)
            return Listeners(
                http=http, control=control[0], adopted=True, owns_control_path=False, hosts=hosts
            )
        return Listeners(
            http=http, control=bind_control(paths.control_socket), adopted=True, hosts=hosts
        )
    bound, bound_hosts = bind_http(settings.host, settings.port)
    try:
        own_control = bind_control(paths.control_socket)
    except BaseException:
        for sock in bound:
            sock.close()
        raise
    # A Unix socket leaves a file to remove at exit; a named pipe goes with its handles.
    owns_path = isinstance(own_control, socket.socket)
    return Listeners(
        http=bound, control=own_control, hosts=bound_hosts, owns_control_path=owns_path
    )


@dataclass
class Daemon:
    """One run of ``oauth-bridge serve``."""

    config: Config
    paths: Paths
    notifier: Notifier

    services: Services | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    browser_server: BrowserServer | None = None  # the TCP port's, once it listens

    async def run(
        self,
        listeners: Listeners,
        *,
        stop: asyncio.Event | None = None,
        handle_signals: bool = True,
    ) -> None:
        """Serve on ``listeners`` until ``stop`` is set (or SIGTERM / SIGINT arrives)."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        undo_signals = stop_signals(loop, stop.set) if handle_signals else None
        settings = self.config.settings
        loop.set_exception_handler(OutOfDescriptors().handle)
        async with open_services(self.config, self.paths) as bridge:
            bridge.bound(hosts=listeners.hosts, port=listeners.port)
            bridge.agent_auth.resume()
            runners = [
                BrowserRunner(
                    create_browser_app(bridge),
                    access_log_class=AccessLogger,
                    handle_signals=False,
                    shutdown_timeout=settings.shutdown_grace_seconds,
                    # Closes a connection that sends no complete request head in time,
                    # at its start as between requests (aiohttp's default is an hour).
                    keepalive_timeout=settings.connection_idle_seconds,
                    lingering_time=LINGER_SECONDS,
                ),
                # Its parser's refusals too are the control API's JSON, not aiohttp's text.
                ControlRunner(
                    create_control_app(bridge),
                    access_log_class=AccessLogger,
                    handle_signals=False,
                    # A tool that went away (Ctrl-C, a killed process) takes its request
                    # with it: a login it was starting is dropped, not registered for no
                    # one, and a dead control plane is not retried on its behalf.
                    handler_cancellation=True,
                    shutdown_timeout=settings.shutdown_grace_seconds,
                    # Closes a connection that sends no complete request head in time,
                    # at its start as between requests (aiohttp's default is an hour).
                    keepalive_timeout=settings.connection_idle_seconds,
                ),
            ]
            sites: list[web.BaseSite] = []
            try:
                for runner in runners:
                    await runner.setup()
                self.browser_server = cast("BrowserServer", runners[0].server)
                sites = [web.SockSite(runners[0], sock) for sock in listeners.http]
                sites.append(control_site(runners[1], listeners.control))
                for site in sites:
                    await site.start()
                self._ready(bridge, listeners)
                self.services = bridge
                self.ready.set()
                watchdog = Watchdog(self.notifier, loop)
                # Under socket activation systemd keeps the sockets and starts us again;
                # an auto-started daemon releases its port and files, and the next tool
                # command starts a new one.
                idle = IdleExit(bridge, runners, settings.idle_exit_seconds, stop)
                await stop.wait()
                log.info(
                    "stopping: no new connections; waiting up to %.0fs for forwards",
                    settings.shutdown_grace_seconds,
                )
                self.notifier.notify("STOPPING=1")
                # From here no forward starts (a keep-alive connection may still bring a
                # callback) and every long-poll answers at once with the login as it is.
                bridge.logins.begin_shutdown()
                watchdog.cancel()
                idle.cancel()
                for site in sites:
                    await site.stop()
                unfinished = await bridge.logins.drain(settings.shutdown_grace_seconds)
                if unfinished:
                    log.warning(
                        "%d forward(s) did not finish in time: marked interrupted", unfinished
                    )
            finally:
                self._remove_runtime_files(listeners)
                for runner in runners:
                    await runner.cleanup()
        if undo_signals is not None:
            undo_signals()
        log.info("stopped")

    def _ready(self, bridge: Services, listeners: Listeners) -> None:
        write_daemon_json(
            self.paths.daemon_json,
            {
                "pid": os.getpid(),
                "url": bridge.url,
                "control_socket": str(self.paths.control_socket),
                "version": __version__,
            },
        )
        log.info(
            "oauth-bridge %s ready: callbacks at %s/callback/<provider>, control API on %s%s",
            __version__,
            bridge.url,
            self.paths.control_socket,
            f" (sockets from {SERVICE_MANAGER})" if listeners.adopted else "",
        )

        def status() -> None:
            last = bridge.logins.last_outcome
            self.notifier.notify(
                f"STATUS={bridge.logins.store.pending_count} pending"
                + (f"; last outcome: {last.value}" if last else "")
            )

        if self.notifier.enabled:
            bridge.logins.listeners.append(status)
            self.notifier.notify("READY=1", f"STATUS=ready on {bridge.url}; 0 pending")

    def _remove_runtime_files(self, listeners: Listeners) -> None:
        info = read_daemon_json(self.paths.daemon_json)
        if info is not None and info.get("pid") == os.getpid():
            self.paths.daemon_json.unlink(missing_ok=True)
        if listeners.owns_control_path:
            self.paths.control_socket.unlink(missing_ok=True)


# -- the TCP port's server: our pages for what aiohttp refuses, and the caps -----------


def own_page(page_status: str, status: int, sentence: str, **headers: str) -> web.Response:
    """One of our pages, with the security headers, for an answer given before routing.

    The app's on_response_prepare signal adds the headers to what it answers; a request
    that never reached the app (unparseable, too large) must be given them here. The
    connection is closed after it: what is left of such a request is not worth reading.
    """
    response = web.Response(
        text=render(page_status, reason=sentence),
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={**SECURITY_HEADERS, "Connection": "close", **headers},
    )
    response.force_close()
    return response


def too_large() -> web.Response:
    return own_page(
        "invalid",
        413,
        f"The request carried more than {MAX_BODY_BYTES // 1024} KiB; a sign-in response "
        "is never that large.",
    )


def _raw_page(status: HTTPStatus, page_status: str, sentence: str, extra: dict[str, str]) -> bytes:
    """A whole HTTP answer, as bytes: for a connection refused before aiohttp parses anything."""
    body = render(page_status, reason=sentence).encode()
    headers = {
        **SECURITY_HEADERS,
        "Content-Type": "text/html; charset=utf-8",
        "Content-Length": str(len(body)),
        "Connection": "close",
        **extra,
    }
    head = f"HTTP/1.1 {status.value} {status.phrase}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    return head.encode("latin-1") + b"\r\n" + body


# "pending" and a reload, as when the daemon is short of descriptors: nothing of the
# request was read, so the same address, reloaded, completes the login.
BUSY_ANSWER = _raw_page(
    HTTPStatus.SERVICE_UNAVAILABLE,
    "pending",
    "oauth-bridge has too many connections open right now and read nothing of this one. "
    "Reload this page in a few seconds to finish signing in.",
    {"Retry-After": "1"},
)


class BrowserServer(web.Server):
    """The TCP port's aiohttp server: the app's handler, behind the body cap.

    Its connections are BrowserProtocols, which answer aiohttp's own refusals (an
    unparseable request, a body that cannot be decoded) with our pages and a short log
    line instead of aiohttp's plain text and traceback, and refuse a connection past
    MAX_CONNECTIONS with a 503 page. After a flood it hands back the memory it took.
    """

    def __init__(self, app_server: web.Server, **kwargs: Any) -> None:
        super().__init__(self._capped, request_factory=app_server.request_factory, **kwargs)
        self.app_handler = app_server.request_handler
        self.max_connections = MAX_CONNECTIONS
        self.bad_requests = BadRequestLines(logging.getLogger("aiohttp.server"))
        self.busy = BusyReports()
        self.calm_check: asyncio.TimerHandle | None = None

    def __call__(self) -> RequestHandler:
        return BrowserProtocol(self, loop=self._loop, **self._kwargs)

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if self.calm_check is None and len(self._connections) >= FLOOD_CONNECTIONS:
            self.calm_check = self._loop.call_later(CALM_CHECK_SECONDS, self._after_flood)

    def _after_flood(self) -> None:
        """Once a flood is over, give back the memory it took; until then look each second."""
        if len(self._connections) > CALM_CONNECTIONS:
            self.calm_check = self._loop.call_later(CALM_CHECK_SECONDS, self._after_flood)
            return
        self.calm_check = None
        release_memory()

    def pre_shutdown(self) -> None:
        if self.calm_check is not None:
            self.calm_check.cancel()
            self.calm_check = None
        super().pre_shutdown()

    async def _capped(self, request: web.BaseRequest) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            return too_large()
        try:
            return await self.app_handler(request)
        except web.HTTPRequestEntityTooLarge:
            # A chunked body past the app's client_max_size, found as the form was read.
            return too_large()


class BrowserProtocol(RequestHandler):
    """One connection to the TCP port."""

    def __init__(self, server: BrowserServer, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self.server = server
        self.refused: asyncio.Transport | None = None  # set when refused at the cap
        self.linger: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.server.open_connections >= self.server.max_connections:
            self._refuse_busy(cast("asyncio.Transport", transport))
            return
        super().connection_made(transport)

    def _refuse_busy(self, transport: asyncio.Transport) -> None:
        # Answer at once and read nothing: what the client sends is dropped as it comes,
        # so it holds no memory here, and closing after our EOF (not before the client
        # read it) lets the browser show the page instead of a reset connection.
        self.refused = transport
        self.server.busy.refused(self.server.max_connections)
        transport.write(BUSY_ANSWER)
        if transport.can_write_eof():
            transport.write_eof()
        self.linger = asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)

    def data_received(self, data: bytes) -> None:
        if self.refused is None:
            super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.refused is None:
            super().connection_lost(exc)
            return
        # Never registered with the server nor given a task: nothing else to undo.
        if self.linger is not None:
            self.linger.cancel()
        self.refused = self.linger = None

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, ConnectionError):
            # The client left mid-request (a stalled body it gave up on): it reads no
            # answer, and the log has nothing to learn from a traceback.
            status = 400
        elif status < 500 or client_fault(exc) is not None:
            # A request aiohttp could not parse or decode: the client's fault, so one
            # short line a second at most instead of a traceback each.
            status = 400
            self.server.bad_requests.refused(exc)
        else:
            # A fault of ours (or a handler that ran out of time): aiohttp logs it with
            # its traceback, which is wanted here; the answer is one of our pages.
            super().handle_error(request, status, exc, message)
            return own_page(
                "failed",
                status,
                "oauth-bridge could not answer this request because of an error of its "
                "own; its log has the details.",
            )
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was sent already: the connection is broken")
        return own_page("invalid", status, "oauth-bridge could not read this request as HTTP.")

    def log_exception(self, *args: Any, **kw: Any) -> None:
        # A body that cannot be decoded fails again as aiohttp drains it after our
        # answer ("Unhandled exception", with a traceback of 40 lines): a client's fault.
        error = kw.get("exc_info")
        if isinstance(error, BaseException) and client_fault(error) is not None:
            self.server.bad_requests.refused(error)
            return
        super().log_exception(*args, **kw)


def release_memory() -> None:
    """Collect the garbage cycles a flood left, and hand the freed heap back to the system."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    """glibc's malloc_trim, or None (musl, say, returns freed memory its own way)."""
    import ctypes  # here: only a daemon that saw a flood needs it

    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


class BusyReports:
    """Say once a minute at most that connections were refused at the cap."""

    QUIET_SECONDS = 60.0

    def __init__(self) -> None:
        self.reported_at: float | None = None
        self.suppressed = 0

    def refused(self, cap: int) -> None:
        now = time.monotonic()
        if self.reported_at is not None and now - self.reported_at < self.QUIET_SECONDS:
            self.suppressed += 1
            return
        log.warning(
            "%d connections open on the callback port, its cap: new ones are answered 503%s",
            cap,
            f"; {self.suppressed} more were refused since the last such line"
            if self.suppressed
            else "",
        )
        self.reported_at, self.suppressed = now, 0


class BrowserRunner(web.AppRunner):
    """The TCP port's runner: a BrowserServer in front of the browser app."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        # No public way to set this once the app is built (create_browser_app could pass
        # client_max_size=): a form read stops here, a request that says more gets a 413.
        app._client_max_size = MAX_BODY_BYTES
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        # The app's own server runs its startup and freezes it; ours takes its handler.
        app_server = await super()._make_server()
        return BrowserServer(app_server, **self._kwargs)


class OutOfDescriptors:
    """Report running out of file descriptors once a minute, not once per accept.

    asyncio's accept loop reports EMFILE through the loop's exception handler with a
    traceback each time it retries: under a flood of idle connections that filled a log
    at 3 MB a second. Anything else goes to the default handler as before.
    """

    QUIET_SECONDS = 60.0

    def __init__(self) -> None:
        self.reported_at: float | None = None
        self.suppressed = 0

    def handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        error = context.get("exception")
        if not (isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE)):
            loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if self.reported_at is not None and now - self.reported_at < self.QUIET_SECONDS:
            self.suppressed += 1
            return
        log.warning(
            "out of file descriptors (%s): new connections wait%s",
            error.strerror,
            f"; {self.suppressed} more such report(s) were dropped" if self.suppressed else "",
        )
        self.reported_at, self.suppressed = now, 0


class Watchdog:
    """Ping systemd at half its interval, from the event loop: a stuck loop stops the pings."""

    def __init__(self, notifier: Notifier, loop: asyncio.AbstractEventLoop) -> None:
        self.notifier = notifier
        self.loop = loop
        self.interval = notifier.watchdog_interval
        self.handle: asyncio.TimerHandle | None = None
        if self.interval is not None:
            self.handle = loop.call_later(self.interval / 2, self.ping)

    def ping(self) -> None:
        self.notifier.notify("WATCHDOG=1")
        assert self.interval is not None
        self.handle = self.loop.call_later(self.interval / 2, self.ping)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()


class IdleExit:
    """Stop the daemon after ``seconds`` with no login under way and no connection open.

    One timer, re-armed only when it fires: an idle daemon wakes once per period at most.
    """

    def __init__(
        self,
        bridge: Services,
        runners: list[web.AppRunner],
        seconds: float | None,
        stop: asyncio.Event,
    ) -> None:
        self.bridge = bridge
        self.runners = runners
        self.seconds = seconds
        self.stop = stop
        self.handle: asyncio.TimerHandle | None = None
        if seconds is not None:
            self.handle = asyncio.get_running_loop().call_later(seconds, self.check)

    def busy(self) -> bool:
        connections = sum(len(r.server.connections) for r in self.runners if r.server)
        return connections > 0 or self.bridge.logins.busy

    def check(self) -> None:
        assert self.seconds is not None
        idle_for = time.monotonic() - self.bridge.last_activity
        if self.busy():
            wait = self.seconds
        elif idle_for >= self.seconds:
            log.info("idle for %.0fs with nothing pending: exiting", idle_for)
            self.stop.set()
            return
        else:
            wait = self.seconds - idle_for
        self.handle = asyncio.get_running_loop().call_later(wait, self.check)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()


def harden_process() -> None:
    """Set what the daemon needs of its process before it opens anything.

    No core dump (it would hold the API key, codes and states; only the systemd unit
    used to say so), files private to the user whatever the caller's umask, and as
    many open files as the hard limit allows: at systemd's default soft limit of 1024,
    idle connections could starve the control socket and the forward of descriptors.
    """
    system_harden_process(log)


def warn_without_credentials(config: Config) -> None:
    """Say at start, in one line, that LangSmith will refuse every login without a credential."""
    sources = config.credentials.sources
    if not (sources.get("api_key") or sources.get("bearer_token")):
        log.warning(
            "no LangSmith credential: every login will be refused after the user signs in. "
            "Set LANGSMITH_API_KEY (or OAUTH_BRIDGE_BEARER_TOKEN) where the daemon starts, "
            "or api_key_file in the config file (a systemd service sees no shell variable)"
        )


def one_line(message: str) -> str:
    """A message of several lines (a config error lists each key) as one log line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    text = lines[0] if lines else ""
    for line in lines[1:]:
        text += (" " if text.endswith(":") else "; ") + line
    return printable(text)


def refuse(exc: BridgeError) -> int:
    """Write why ``serve`` will not run as one line of its log; return its exit code.

    The log is wherever the daemon's lines go (stderr: a terminal, the daemon.log of an
    auto-started daemon, the journal), so a start that was refused is found where its
    runs are. Before the logging is set up (a config that does not load) it is set up
    here, at its default level.
    """
    if not logging.getLogger().handlers:
        from bridge.daemon.logs import configure

        configure("info")
    log.error("refusing to start: %s", one_line(exc.message))
    return int(exc.exit_code)


def run_serve(config: Config, paths: Paths) -> int:
    """Run the daemon until SIGTERM or SIGINT; return its exit code.

    A start it refuses (another daemon holds the lock, the port is taken, a runtime or
    state dir that is not safe) is one line of the log, and its exit code.
    """
    try:
        harden_process()
        warn_without_credentials(config)
        ensure_private_dir(paths.runtime_dir)
        ensure_state_dir(paths.state_dir)
        locks = acquire_daemon_locks(paths)
    except BridgeError as exc:
        return refuse(exc)
    daemon: Daemon | None = None
    try:
        listeners = open_listeners(config, paths)
        notifier = Notifier.from_environ()
        daemon = Daemon(config=config, paths=paths, notifier=notifier)
        try:
            asyncio.run(daemon.run(listeners))
        finally:
            listeners.close()
    except BridgeError as exc:
        if daemon is not None and daemon.ready.is_set():
            raise  # not a refused start: it ran, and the CLI says why it ended
        return refuse(exc)
    finally:
        for lock in locks:
            lock.close()
    return 0
