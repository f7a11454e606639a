"""The daemon's lifecycle: one per user, listeners up, readiness told, clean shutdown."""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from aiohttp import web

from bridge import __version__
from bridge.daemon.browser import create_browser_app
from bridge.daemon.config import Config
from bridge.daemon.control_api import create_control_app
from bridge.daemon.listeners import Listeners, bind_control, bind_http
from bridge.daemon.logs import AccessLogger
from bridge.daemon.services import Services, open_services
from bridge.daemon.systemd import Notifier, inherited_sockets
from bridge.errors import DaemonUnavailable, UsageError
from bridge.paths import (
    Paths,
    ensure_private_dir,
    ensure_state_dir,
    read_daemon_json,
    write_daemon_json,
)

log = logging.getLogger(__name__)


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
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return False
    held.append(handle)
    return True


def open_listeners(config: Config, paths: Paths) -> Listeners:
    """Adopt systemd's sockets when it passed us some, else bind our own."""
    passed = inherited_sockets()
    settings = config.settings
    if passed:
        http = passed.get("http", [])
        if not http:
            raise DaemonUnavailable("systemd passed no TCP socket named 'http'")
        for sock in http:
            address = str(sock.getsockname()[0])
            if not ipaddress.ip_address(address).is_loopback:
                # An edited unit (ListenStream=0.0.0.0:8765) must not put logins on the LAN.
                raise UsageError(
                    f"systemd passed a socket on {address}, which is not loopback: "
                    "oauth-bridge listens on 127.0.0.1 and ::1 only; fix ListenStream= "
                    "in oauth-bridge.socket"
                )
        control = passed.get("control", [])
        hosts = [str(s.getsockname()[0]) for s in http]
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
    return Listeners(http=bound, control=own_control, hosts=bound_hosts)


@dataclass
class Daemon:
    """One run of ``oauth-bridge serve``."""

    config: Config
    paths: Paths
    notifier: Notifier

    services: Services | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)

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
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
        settings = self.config.settings
        async with open_services(self.config, self.paths) as bridge:
            bridge.bound(hosts=listeners.hosts, port=listeners.port)
            bridge.agent_auth.resume()
            runners = [
                web.AppRunner(
                    create_browser_app(bridge),
                    access_log_class=AccessLogger,
                    handle_signals=False,
                    shutdown_timeout=settings.shutdown_grace_seconds,
                ),
                web.AppRunner(
                    create_control_app(bridge),
                    access_log_class=AccessLogger,
                    handle_signals=False,
                    shutdown_timeout=settings.shutdown_grace_seconds,
                ),
            ]
            sites: list[web.SockSite] = []
            try:
                for runner in runners:
                    await runner.setup()
                sites = [web.SockSite(runners[0], sock) for sock in listeners.http]
                sites.append(web.SockSite(runners[1], listeners.control))
                for site in sites:
                    await site.start()
                self._ready(bridge, listeners)
                self.services = bridge
                self.ready.set()
                watchdog = Watchdog(self.notifier, loop)
                idle_exit = settings.idle_exit_seconds
                if idle_exit is not None and not listeners.adopted:
                    # Without systemd holding the sockets, nothing would restart us.
                    log.warning("--idle-exit applies only under socket activation: ignored")
                    idle_exit = None
                idle = IdleExit(bridge, runners, idle_exit, stop)
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
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
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
            " (sockets from systemd)" if listeners.adopted else "",
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


def run_serve(config: Config, paths: Paths) -> int:
    """Run the daemon until SIGTERM or SIGINT; return its exit code."""
    ensure_private_dir(paths.runtime_dir)
    ensure_state_dir(paths.state_dir)
    locks = acquire_daemon_locks(paths)
    try:
        listeners = open_listeners(config, paths)
        notifier = Notifier.from_environ()
        daemon = Daemon(config=config, paths=paths, notifier=notifier)
        try:
            asyncio.run(daemon.run(listeners))
        finally:
            listeners.close()
    finally:
        for lock in locks:
            lock.close()
    return 0
