"""The daemon holds under faults: bad encodings, idle connections, descriptor exhaustion, cores."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from bridge.daemon.lifecycle import OutOfDescriptors
from bridge.paths import Paths
from tests.conftest import DaemonProcess, RunningDaemon, daemon_environ, wait_for, wait_ready
from tests.control_plane_double import ControlPlaneDouble
from tests.daemon.test_daemon_process import run_serve
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


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nothing/here", 404), ("POST", "/healthz", 405), ("GET", "/", 200)],
)
async def test_every_answer_of_the_port_is_one_of_our_pages(
    bridge: RunningDaemon, method: str, path: str, status: int
) -> None:
    async with bridge.browser.request(method, f"{bridge.url}{path}") as response:
        page = await response.text()
        got = response.status
        headers = response.headers

    assert got == status
    assert meta_status(page) == "unknown"
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    if path == "/":
        assert "oauth-bridge is running" in page


def send_raw(port: int, payloads: list[bytes]) -> list[bytes]:
    answers = []
    for payload in payloads:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(payload)
            answers.append(sock.recv(64))
    return answers


async def test_unreadable_requests_leave_no_traceback_and_no_flood_in_the_log(
    daemon_process: StartDaemon,
) -> None:
    proc = daemon_process()
    info = await asyncio.to_thread(wait_ready, proc)
    port = int(str(info["url"]).rsplit(":", 1)[1])
    garbage = [
        b"GET /x\x00y HTTP/1.1\r\n\r\n",
        b"BLAH\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
    ]

    answers = await asyncio.to_thread(send_raw, port, garbage * 20)

    assert all(a.startswith(b"HTTP/1.0 400") for a in answers)
    log = proc.log_text()
    assert "Traceback" not in log
    assert "aiohttp.server" not in log  # at info: not a line; at debug: one a second


async def test_the_access_log_writes_the_raw_path_without_its_query(
    daemon_process: StartDaemon,
) -> None:
    proc = daemon_process(OAUTH_BRIDGE_LOG_LEVEL="debug")
    info = await asyncio.to_thread(wait_ready, proc)
    port = int(str(info["url"]).rsplit(":", 1)[1])
    forged = f"GET /x%0d%0aFORGED%00LINE?code=c-secret HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"

    await asyncio.to_thread(send_raw, port, [forged.encode()])
    await asyncio.to_thread(
        wait_for, lambda: "FORGED" in proc.log_text(), what="the access log line"
    )

    (line,) = [line for line in proc.log_text().splitlines() if "FORGED" in line]
    assert "GET /x%0d%0aFORGED%00LINE 404" in line
    assert "c-secret" not in proc.log_text()


def test_a_state_dir_open_to_others_is_refused(paths: Paths) -> None:
    paths.runtime_dir.parent.mkdir(parents=True, exist_ok=True)
    paths.state_dir.mkdir(mode=0o755)
    paths.state_dir.chmod(0o755)

    result = run_serve(paths, daemon_environ(paths, "http://127.0.0.1:9"))

    assert result.returncode == 2
    assert f"{paths.state_dir} is open to other users" in result.stderr
    assert not paths.store_file.exists()


def test_a_state_dir_under_a_directory_others_may_write_is_refused(
    paths: Paths, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # no sticky bit: anyone may rename what is inside
    state = shared / "state"
    env = daemon_environ(paths, "http://127.0.0.1:9", OAUTH_BRIDGE_STATE_DIR=str(state))
    paths.runtime_dir.parent.mkdir(parents=True, exist_ok=True)

    result = run_serve(paths, env)

    assert result.returncode == 2
    assert f"is under {shared}, which is writable by others" in result.stderr


def test_a_sticky_world_writable_parent_like_tmp_is_fine(paths: Paths, tmp_path: Path) -> None:
    from bridge.paths import ensure_state_dir

    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)

    ensure_state_dir(sticky / "state")

    assert stat.S_IMODE((sticky / "state").stat().st_mode) == 0o700


async def test_out_of_descriptors_the_state_is_not_consumed_and_a_reload_completes_it(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bridge.daemon.callback as callback

    login = await bridge.register("github", "st-emfile")

    class Exhausted:
        """The operating system with every file descriptor in use."""

        AF_INET = socket.AF_INET
        SOCK_STREAM = socket.SOCK_STREAM

        @staticmethod
        def socket(*args: object) -> None:
            raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(callback, "socket", Exhausted)
    status, page, _ = await bridge.hit("code=c&state=st-emfile")
    pending = await bridge.login(login["id"])
    monkeypatch.undo()
    reloaded, _, _ = await bridge.hit("code=c&state=st-emfile")

    assert (status, meta_status(page)) == (503, "pending")
    assert "Reload this page" in page
    assert pending["status"] == "pending"
    assert reloaded == 200
    assert (await bridge.login(login["id"], wait=10))["status"] == "succeeded"
    assert len(control_plane.calls) == 1


async def test_a_store_that_cannot_be_synced_fails_the_login_and_sends_nothing(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    import os

    store = bridge.services.logins.store
    os.close(store._wal)
    store._wal = os.open("/dev/null", os.O_RDONLY)  # fdatasync refuses it: EINVAL
    login = await bridge.register("github", "st-nosync")

    status, page, _ = await bridge.hit("code=c&state=st-nosync")
    done = await bridge.login(login["id"])

    assert (status, meta_status(page)) == (200, "failed")
    assert done["result"]["error"] == "interrupted"
    assert "could not write to its store" in done["result"]["message"]
    assert control_plane.calls == []
