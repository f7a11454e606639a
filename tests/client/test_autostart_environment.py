"""A daemon a tool starts is its own: it speaks for no service manager of the caller's."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

from bridge.paths import Paths
from tests.client.conftest import serve_pids
from tests.client.test_cli import cli

# What systemd hands a service: a tool run from one (a unit's ExecStart=, a socket-activated
# helper) passes them on to whatever it spawns unless told otherwise.
SERVICE_MANAGER_VARIABLES = (
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
)


def datagrams(sock: socket.socket, seconds: float) -> list[bytes]:
    """Every datagram that arrives on ``sock`` within ``seconds``: a bounded wait."""
    received = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            received.append(sock.recv(4096))
        except TimeoutError:
            break
    return received


async def test_an_auto_started_daemon_tells_the_callers_service_manager_nothing(
    cli_env: dict[str, str], paths: Paths
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        name = f"oauth-bridge-test-notify-{os.getpid()}-{time.monotonic_ns()}"
        manager.bind(b"\0" + name.encode())
        env = {
            **cli_env,
            "NOTIFY_SOCKET": f"@{name}",
            "LISTEN_FDS": "1",
            "LISTEN_PID": str(os.getpid()),
            "LISTEN_FDNAMES": "http",
            "WATCHDOG_USEC": "1000000",
            "WATCHDOG_PID": str(os.getpid()),
        }

        result = await asyncio.to_thread(
            cli, env, "expect", "--provider", "github", "--state", "s-notify"
        )
        # The daemon said READY=1 (if it was going to) before its status answered,
        # that is before the command returned; a second more covers a slow scheduler.
        told = await asyncio.to_thread(datagrams, manager, 1.0)

    assert result.returncode == 0, result.stderr
    assert told == []
    (pid,) = serve_pids(paths)
    environ = (await asyncio.to_thread(Path(f"/proc/{pid}/environ").read_bytes)).split(b"\0")
    names = {entry.split(b"=", 1)[0].decode() for entry in environ if entry}
    assert names.isdisjoint(SERVICE_MANAGER_VARIABLES)
