"""The daemon as systemd runs it, in real processes: socket activation, sd_notify, idle exit."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from bridge.paths import Paths
from tests.conftest import REPO, daemon_environ, free_port, require_tool
from tests.control_plane_double import ControlPlaneDouble

ACTIVATE = "/usr/bin/systemd-socket-activate"
DEADLINE = 15.0
IDLE_EXIT = 1.0
# For daemons that never forward: the discard port, where nothing answers.
NO_FORWARD = "http://127.0.0.1:9"

T = TypeVar("T")


# Plays systemd for a restart: moves the fds named in argv to 3, 4, ... and execs the
# daemon in the same process, so LISTEN_PID (set here to our own pid) stays true.
ADOPT = r"""
import fcntl, os, sys
names, count, *rest = sys.argv[1:]
fds, argv = [int(fd) for fd in rest[: int(count)]], rest[int(count):]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
for fd in fds:
    os.close(fd)
for index, fd in enumerate(high):
    os.dup2(fd, 3 + index)
    os.close(fd)
os.environ.update(LISTEN_FDS=str(len(high)), LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES=names)
os.execv(sys.executable, [sys.executable, *argv])
"""


@dataclass
class Served:
    """A daemon process (under systemd-socket-activate, its pid is the launcher's)."""

    process: subprocess.Popen[bytes]
    paths: Paths
    log: Path
    port: int = 0

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    async def exit_code(self, within: float = DEADLINE) -> int:
        """Wait up to ``within`` seconds for the process to end, off the event loop."""
        return await asyncio.to_thread(self.process.wait, within)

    async def ready(self) -> dict[str, Any]:
        """Wait until this very process has published ``daemon.json``."""

        def published() -> dict[str, Any] | None:
            try:
                info: dict[str, Any] = json.loads(self.paths.daemon_json.read_text())
            except (OSError, ValueError):
                return None
            return info if info.get("pid") == self.process.pid else None

        return await until(published, what="daemon.json", proc=self)


async def until(probe: Callable[[], T | None], *, what: str, proc: Served | None = None) -> T:
    """Poll ``probe`` until it returns something truthy, up to a deadline."""
    deadline = time.monotonic() + DEADLINE
    while not (found := probe()):
        if proc is not None and proc.process.poll() is not None:
            raise AssertionError(f"exited {proc.process.returncode}: {proc.log_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
    return found


@pytest.fixture
def runtime(paths: Paths) -> Paths:
    """Create the runtime dir 0700, as systemd's RuntimeDirectory= does before binding in it."""
    paths.runtime_dir.mkdir(mode=0o700, parents=True)
    paths.config_file.write_text("", encoding="utf-8")
    return paths


@pytest.fixture
async def spawn(runtime: Paths) -> AsyncIterator[Callable[..., Served]]:
    """Start processes with their output in a log file; kill whatever is left at the end."""
    started: list[Served] = []

    def start(argv: list[str], env: dict[str, str], *, pass_fds: tuple[int, ...] = ()) -> Served:
        log = runtime.runtime_dir.parent / f"process-{len(started)}.out"
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv,
                env=env,
                pass_fds=pass_fds,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=REPO,
            )
        served = Served(process=process, paths=runtime, log=log)
        started.append(served)
        return served

    yield start
    for served in started:
        if served.process.poll() is None:
            served.process.kill()
        await asyncio.to_thread(served.process.wait, DEADLINE)


def serve_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "bridge", "serve", *args]


@pytest.fixture
def socket_activate(
    runtime: Paths, spawn: Callable[..., Served]
) -> Callable[..., Awaitable[Served]]:
    """Run ``serve`` under systemd-socket-activate, listening on a TCP port and control.sock."""
    require_tool("systemd-socket-activate", "systemd")

    async def start(env: dict[str, str], *args: str) -> Served:
        # It takes no port 0: retry the rare port another process took meanwhile.
        for _ in range(5):
            port = free_port()
            served = spawn(
                [
                    ACTIVATE,
                    f"--listen=127.0.0.1:{port}",
                    "--fdname=http",
                    f"--listen={runtime.control_socket}",
                    "--fdname=control",
                    # The launched program gets only the variables named here.
                    *(f"--setenv={name}" for name in env),
                    *serve_argv(*args),
                ],
                env,
            )
            served.port = port
            listening = f"Listening on {runtime.control_socket} as 4."

            def settled(served: Served = served, listening: str = listening) -> bool:
                return listening in served.log_text() or served.process.poll() is not None

            await until(settled, what="systemd-socket-activate to listen")
            if served.process.poll() is None:
                return served
            if "Address already in use" not in served.log_text():
                raise AssertionError(served.log_text())
            runtime.control_socket.unlink(missing_ok=True)
        raise AssertionError("no free port for systemd-socket-activate")

    return start


def socket_inode(pid: int, fd: int) -> int:
    target = os.readlink(f"/proc/{pid}/fd/{fd}")
    match = re.fullmatch(r"socket:\[(\d+)\]", target)
    assert match, target
    return int(match[1])


def listening_sockets(pid: int) -> set[int]:
    """Return the inodes of the listening sockets (TCP or Unix) that ``pid`` holds open."""
    held = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed since the listing
            continue
        if match := re.fullmatch(r"socket:\[(\d+)\]", target):
            held.add(int(match[1]))
    listening = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                listening.add(int(fields[9]))
    for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[3], 16) & 0x10000:  # __SO_ACCEPTCON: a listening socket
            listening.add(int(fields[6]))
    return held & listening


def control_session(paths: Paths) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.UnixConnector(path=str(paths.control_socket)),
        timeout=aiohttp.ClientTimeout(total=DEADLINE),
    )


async def register(paths: Paths, state: str, provider_id: str = "github") -> dict[str, Any]:
    async with (
        control_session(paths) as control,
        control.post(
            "http://bridge/v1/logins", json={"provider_id": provider_id, "state": state}
        ) as response,
    ):
        assert response.status == 201, await response.text()
        login: dict[str, Any] = await response.json()
        return login


async def control_get(paths: Paths, path: str) -> tuple[int, Any]:
    async with (
        control_session(paths) as control,
        control.get(f"http://bridge{path}") as response,
    ):
        return response.status, await response.json()


async def healthz(port: int) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEADLINE)) as browser,
        browser.get(f"http://127.0.0.1:{port}/healthz") as response,
    ):
        return response.status, await response.json()


def meta_status(page: str) -> str:
    match = re.search(r'<meta name="oauth-bridge-status" content="([^"]+)">', page)
    assert match, page
    return match.group(1)


# -- socket activation ----------------------------------------------------------


async def test_login_completes_through_the_sockets_systemd_passed(
    runtime: Paths,
    control_plane: ControlPlaneDouble,
    socket_activate: Callable[..., Awaitable[Served]],
) -> None:
    served = await socket_activate(daemon_environ(runtime, control_plane.url))
    pid = served.process.pid
    passed = {socket_inode(pid, 3), socket_inode(pid, 4)}

    login = await register(runtime, "st-activated")  # the first connection starts the daemon
    info = await served.ready()
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(f"{login['redirect_uri']}?code=c0de&state=st-activated") as response,
    ):
        page_status = (response.status, meta_status(await response.text()))
    status, final = await control_get(runtime, f"/v1/logins/{login['id']}")

    assert f"http://127.0.0.1:{served.port}" == info["url"]
    assert f"http://127.0.0.1:{served.port}/callback/github" == login["redirect_uri"]
    assert page_status == (200, "succeeded")
    assert [c.body for c in control_plane.calls] == [{"code": "c0de", "state": "st-activated"}]
    assert (status, final["status"]) == (200, "succeeded")
    assert passed == listening_sockets(pid)  # served on systemd's sockets, bound none of its own


async def test_clean_exit_keeps_the_control_socket_systemd_passed(
    runtime: Paths, socket_activate: Callable[..., Awaitable[Served]]
) -> None:
    served = await socket_activate(daemon_environ(runtime, NO_FORWARD))
    assert await control_get(runtime, "/v1/logins") == (200, {"logins": []})
    await served.ready()

    served.process.send_signal(signal.SIGTERM)

    assert await served.exit_code() == 0
    assert not runtime.daemon_json.exists()  # the clean-exit cleanup did run
    assert stat.S_ISSOCK(runtime.control_socket.stat().st_mode)


# -- sd_notify ------------------------------------------------------------------


class NotifySocket:
    """The test's stand-in for systemd's notification socket (NOTIFY_SOCKET)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)

    async def receive(self, within: float = DEADLINE) -> dict[str, str]:
        """Return the next datagram's fields; fail if none arrives in ``within`` seconds."""
        loop = asyncio.get_running_loop()
        try:
            data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), within)
        except TimeoutError:
            raise AssertionError(f"no sd_notify message within {within}s") from None
        return dict(line.split("=", 1) for line in data.decode().splitlines())

    async def until(self, name: str, value: str | None = None) -> dict[str, str]:
        """Skip messages until one carries ``name`` (with ``value``, if given)."""
        deadline = time.monotonic() + DEADLINE
        while True:
            message = await self.receive(max(deadline - time.monotonic(), 0.0))
            if name in message and value in (None, message[name]):
                return message


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.sock.close()


def notified_serve(
    spawn: Callable[..., Served], paths: Paths, notify: NotifySocket, *args: str, **extra: str
) -> Served:
    env = daemon_environ(paths, NO_FORWARD, NOTIFY_SOCKET=str(notify.path), **extra)
    return spawn(serve_argv(*args), env)


async def test_ready_is_sent_only_once_the_listeners_accept(
    runtime: Paths, spawn: Callable[..., Served], notify_socket: NotifySocket
) -> None:
    served = notified_serve(spawn, runtime, notify_socket)

    await notify_socket.until("READY", "1")
    info = json.loads(runtime.daemon_json.read_text())  # no waiting: it must be there already
    port = int(info["url"].rsplit(":", 1)[1])

    assert served.process.pid == info["pid"]
    assert await healthz(port) == (200, {"status": "ok"})
    assert await control_get(runtime, "/v1/logins") == (200, {"logins": []})


async def test_watchdog_pings_at_half_the_interval(
    runtime: Paths, spawn: Callable[..., Served], notify_socket: NotifySocket
) -> None:
    notified_serve(spawn, runtime, notify_socket, WATCHDOG_USEC="1000000")
    await notify_socket.until("READY", "1")
    window_end = time.monotonic() + 2.0

    pings = 0
    while (left := window_end - time.monotonic()) > 0:
        try:
            message = await notify_socket.receive(left)
        except AssertionError:
            break
        pings += message.get("WATCHDOG") == "1"

    # Every 0.5 s gives 3 pings in 2 s; pinging at the full 1 s interval gives only 2.
    assert pings >= 3


async def test_sigterm_sends_stopping_and_exits_0(
    runtime: Paths, spawn: Callable[..., Served], notify_socket: NotifySocket
) -> None:
    served = notified_serve(spawn, runtime, notify_socket)
    await notify_socket.until("READY", "1")

    served.process.send_signal(signal.SIGTERM)

    await notify_socket.until("STOPPING", "1")
    assert await served.exit_code() == 0


async def test_status_shows_the_pending_count_after_a_registration(
    runtime: Paths, spawn: Callable[..., Served], notify_socket: NotifySocket
) -> None:
    notified_serve(spawn, runtime, notify_socket)
    ready = await notify_socket.until("READY", "1")
    assert ready["STATUS"].endswith("; 0 pending")

    await register(runtime, "st-status")

    assert (await notify_socket.until("STATUS"))["STATUS"] == "1 pending"


# -- idle exit ------------------------------------------------------------------


async def test_idle_exit_exits_0_when_nothing_is_pending(
    runtime: Paths, socket_activate: Callable[..., Awaitable[Served]]
) -> None:
    served = await socket_activate(
        daemon_environ(runtime, NO_FORWARD), "--idle-exit", str(IDLE_EXIT)
    )
    assert await healthz(served.port) == (200, {"status": "ok"})

    assert await served.exit_code() == 0
    assert "nothing pending: exiting" in served.log_text()


async def test_idle_exit_waits_while_a_login_is_pending(
    runtime: Paths, socket_activate: Callable[..., Awaitable[Served]]
) -> None:
    served = await socket_activate(
        daemon_environ(runtime, NO_FORWARD), "--idle-exit", str(IDLE_EXIT)
    )
    login = await register(runtime, "st-idle")

    with pytest.raises(subprocess.TimeoutExpired):
        await served.exit_code(within=2.5 * IDLE_EXIT)

    # Once nothing is pending any more, the same daemon does go.
    async with (
        control_session(runtime) as control,
        control.delete(f"http://bridge/v1/logins/{login['id']}") as response,
    ):
        assert response.status == 200
    assert await served.exit_code() == 0


async def test_idle_exit_waits_while_a_forward_is_in_flight(
    runtime: Paths,
    control_plane: ControlPlaneDouble,
    socket_activate: Callable[..., Awaitable[Served]],
) -> None:
    # A short grace: a daemon that began stopping would drop the forward and be gone
    # within the window, rather than linger in its drain.
    env = daemon_environ(
        runtime,
        control_plane.url,
        OAUTH_BRIDGE_FORWARD_DEADLINE_SECONDS="30",
        OAUTH_BRIDGE_SHUTDOWN_GRACE_SECONDS="0.5",
    )
    served = await socket_activate(env, "--idle-exit", str(IDLE_EXIT))
    login = await register(runtime, "st-flight")
    control_plane.script.hang = True

    async def deliver(browser: aiohttp.ClientSession) -> None:
        async with browser.get(f"{login['redirect_uri']}?code=c&state=st-flight") as page:
            await page.read()

    # The browser gives up (a closed tab): the forward it started must still finish.
    async with aiohttp.ClientSession() as browser:
        callback = asyncio.create_task(deliver(browser))
        await asyncio.wait_for(control_plane.called.wait(), DEADLINE)
        callback.cancel()
        with pytest.raises(asyncio.CancelledError):
            await callback

    with pytest.raises(subprocess.TimeoutExpired):
        await served.exit_code(within=2.5 * IDLE_EXIT)

    control_plane.release.set()
    status, final = await control_get(runtime, f"/v1/logins/{login['id']}?wait={DEADLINE}")
    assert (status, final["status"]) == (200, "succeeded")
    assert await served.exit_code() == 0


async def test_a_connection_after_an_idle_exit_is_served_by_the_next_daemon(
    runtime: Paths, spawn: Callable[..., Served]
) -> None:
    # The test holds the listening sockets, as systemd does across restarts.
    with (
        socket.create_server(("127.0.0.1", 0)) as http,
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as control,
    ):
        control.bind(str(runtime.control_socket))
        control.listen()
        port = int(http.getsockname()[1])
        fds = (http.fileno(), control.fileno())
        argv = [sys.executable, "-c", ADOPT, "http:control", "2", *map(str, fds)]
        env = daemon_environ(runtime, NO_FORWARD)
        serve = ["-m", "bridge", "serve", "--idle-exit", str(IDLE_EXIT)]

        first = spawn([*argv, *serve], env, pass_fds=fds)
        await first.ready()
        assert await first.exit_code() == 0

        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # into the backlog
        writer.write(
            f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        spawn([*argv, *serve], env, pass_fds=fds)
        try:
            answer = await asyncio.wait_for(reader.read(), DEADLINE)
        finally:
            writer.close()
            await writer.wait_closed()

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n", 1)[0] == b"HTTP/1.1 200 OK"
    assert json.loads(body) == {"status": "ok"}


async def test_idle_exit_without_socket_activation_releases_the_port_and_files(
    runtime: Paths, spawn: Callable[..., Served]
) -> None:
    served = spawn(serve_argv("--idle-exit", str(IDLE_EXIT)), daemon_environ(runtime, NO_FORWARD))
    await served.ready()

    assert await served.exit_code(within=5 * IDLE_EXIT) == 0
    assert not runtime.daemon_json.exists()
    assert not runtime.control_socket.exists()
    assert "idle for" in served.log_text()


async def test_expect_wakes_a_socket_activated_daemon_instead_of_starting_one(
    runtime: Paths,
    control_plane: ControlPlaneDouble,
    socket_activate: Callable[..., Awaitable[Served]],
) -> None:
    env = daemon_environ(runtime, control_plane.url)
    served = await socket_activate(env)
    assert not runtime.daemon_json.exists()  # systemd listens; no daemon has run yet
    redirect = f"http://127.0.0.1:{served.port}/callback/github"

    result = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "bridge",
            "expect",
            "--provider",
            "github",
            "--auth-url",
            f"https://github.com/login/oauth/authorize?state=st-wake&redirect_uri={redirect}",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    info = await served.ready()
    assert info["url"] == f"http://127.0.0.1:{served.port}"
    assert "daemon.log" not in {p.name for p in runtime.state_dir.iterdir()}  # none auto-started


def test_a_non_loopback_socket_from_systemd_is_refused(runtime: Paths) -> None:
    # Plays an edited unit (ListenStream=0.0.0.0:...): no traffic is sent to it.
    with socket.socket() as wide, socket.socket(socket.AF_UNIX) as control:
        wide.bind(("0.0.0.0", 0))  # the very thing the daemon must refuse
        wide.listen()
        control.bind(str(runtime.control_socket))
        control.listen()
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                ADOPT,
                "http:control",
                "2",
                str(wide.fileno()),
                str(control.fileno()),
                *serve_argv()[1:],
            ],
            env=daemon_environ(runtime, NO_FORWARD),
            cwd=REPO,
            pass_fds=(wide.fileno(), control.fileno()),
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )

    assert result.returncode == 2
    assert "which is not loopback" in result.stderr


def adopt_and_serve(
    runtime: Paths, names: str, *sockets: socket.socket, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run `serve` on ``sockets`` as systemd passes them (LISTEN_FDNAMES=``names``)."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            ADOPT,
            names,
            str(len(sockets)),
            *(str(sock.fileno()) for sock in sockets),
            *serve_argv()[1:],
        ],
        env=daemon_environ(runtime, NO_FORWARD, **extra),
        cwd=REPO,
        pass_fds=tuple(sock.fileno() for sock in sockets),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


def test_a_unix_socket_passed_as_http_is_refused_cleanly(runtime: Paths, tmp_path: Path) -> None:
    # Plays an edited unit: ListenStream=%t/oauth-bridge/web.sock in oauth-bridge.socket.
    with socket.socket(socket.AF_UNIX) as web, socket.socket(socket.AF_UNIX) as control:
        web.bind(str(tmp_path / "web.sock"))
        web.listen()
        control.bind(str(runtime.control_socket))
        control.listen()
        result = adopt_and_serve(runtime, "http:control", web, control)

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "'http'" in result.stderr
    assert "fix ListenStream=" in result.stderr
    assert "oauth-bridge.socket" in result.stderr


async def test_sockets_on_another_port_than_configured_draw_a_warning(
    runtime: Paths, socket_activate: Callable[..., Awaitable[Served]]
) -> None:
    configured = free_port()
    served = await socket_activate(
        daemon_environ(runtime, NO_FORWARD, OAUTH_BRIDGE_PORT=str(configured))
    )

    assert (await healthz(served.port))[0] == 200  # served where systemd listens
    await served.ready()
    assert (
        f"systemd passed sockets on port {served.port}, but the configured port is {configured}"
        in served.log_text()
    )


async def test_sockets_on_the_configured_port_draw_no_warning(
    runtime: Paths, socket_activate: Callable[..., Awaitable[Served]]
) -> None:
    served = await socket_activate(daemon_environ(runtime, NO_FORWARD))  # port 0: any

    assert (await healthz(served.port))[0] == 200
    await served.ready()
    assert "but the configured port is" not in served.log_text()
