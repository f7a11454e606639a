"""The daemon holds under faults: bad encodings, idle connections, descriptor exhaustion, cores."""

from __future__ import annotations

import asyncio
import errno
import logging
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from bridge.daemon.lifecycle import OutOfDescriptors
from bridge.paths import Paths
from tests.conftest import DaemonProcess, RunningDaemon, wait_ready
from tests.control_plane_double import ControlPlaneDouble
from tests.daemon.test_flow import meta_status

StartDaemon = Callable[..., DaemonProcess]


async def test_a_gzip_header_on_a_body_that_is_not_gzip_is_invalid_not_a_500(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    login = await bridge.register("github", "st-gzip")

    async with (
        aiohttp.ClientSession(auto_decompress=False) as raw,
        raw.post(
            f"{bridge.url}/callback/github",
            data=b"code=c&state=st-gzip",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Content-Encoding": "gzip",
            },
        ) as response,
    ):
        page = await response.text()
        status = response.status

    assert (status, meta_status(page)) == (400, "invalid")
    assert "could not be read" in page
    assert control_plane.calls == []
    assert (await bridge.login(login["id"]))["status"] == "pending"


async def test_a_connection_that_sends_nothing_is_closed(
    start_daemon: Callable[..., Awaitable[RunningDaemon]],
) -> None:
    bridge = await start_daemon(OAUTH_BRIDGE_CONNECTION_IDLE_SECONDS="0.3")
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1")  # half a request head, then silence

    closed = await asyncio.wait_for(reader.read(), 5)  # EOF once the daemon closes it

    assert closed == b""
    writer.close()


async def test_the_daemon_raises_its_open_file_limit_and_dumps_no_core(
    daemon_process: StartDaemon, paths: Paths
) -> None:
    proc = daemon_process()
    info = await asyncio.to_thread(wait_ready, proc)

    limits = await asyncio.to_thread(Path(f"/proc/{info['pid']}/limits").read_text)
    core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
    files = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    soft, hard = files.split()[3:5]

    assert core.split()[4:6] == ["0", "0"]
    assert soft == hard
    store = await asyncio.to_thread(paths.store_file.stat)
    assert stat.S_IMODE(store.st_mode) == 0o600


async def test_the_daemon_says_at_start_when_it_has_no_credential(
    daemon_process: StartDaemon,
) -> None:
    proc = daemon_process(LANGSMITH_API_KEY="", OAUTH_BRIDGE_BEARER_TOKEN="")
    await asyncio.to_thread(wait_ready, proc)

    lines = [line for line in proc.log_text().splitlines() if "no LangSmith credential" in line]

    assert len(lines) == 1
    assert "LANGSMITH_API_KEY" in lines[0]


def test_running_out_of_descriptors_is_reported_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.new_event_loop()
    handler = OutOfDescriptors()
    emfile = OSError(errno.EMFILE, "Too many open files")
    try:
        with caplog.at_level(logging.WARNING, logger="bridge.daemon.lifecycle"):
            for _ in range(500):
                handler.handle(
                    loop, {"message": "socket.accept() out of system resource", "exception": emfile}
                )
    finally:
        loop.close()

    assert [r.getMessage() for r in caplog.records] == [
        "out of file descriptors (Too many open files): new connections wait"
    ]
    assert handler.suppressed == 499
