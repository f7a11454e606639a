"""The daemon and the tool as Windows runs them (a Windows CPython under Wine).

The control channel is the user's named pipe, `\\\\.\\pipe\\oauth-bridge-<SID>`; the
browser's callback comes from Linux to the daemon's TCP port (Wine's sockets are the
host's), and the daemon forwards it to the control-plane double in this process.
Wine gives every process one SID and enforces no pipe DACL, so a refusal of another
user cannot be shown here: the SID comparison is tested on Linux (tests/test_platform.py).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.control_plane_double import ControlPlaneDouble
from tests.wine.conftest import WindowsDaemon, start_windows_daemon, windows_environ
from tests.wine.winepy import Wine

PIPE_PREFIX = "\\\\.\\pipe\\oauth-bridge-S-1-"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def offline_daemon(wine: Wine, winpython: Path, tmp_path: Path) -> Iterator[WindowsDaemon]:
    """A Windows daemon whose control plane is nowhere (enough for status)."""
    env = windows_environ(tmp_path, "http://127.0.0.1:9")
    daemon = start_windows_daemon(wine, winpython, tmp_path, env)
    yield daemon
    daemon.stop()


@pytest.fixture
async def daemon(
    wine: Wine, winpython: Path, tmp_path: Path, control_plane: ControlPlaneDouble
) -> AsyncIterator[WindowsDaemon]:
    """A Windows daemon that forwards to the control-plane double of this process."""
    env = windows_environ(tmp_path, control_plane.url)
    running = await asyncio.to_thread(start_windows_daemon, wine, winpython, tmp_path, env)
    yield running
    await asyncio.to_thread(running.stop)


def test_the_daemon_serves_status_over_the_named_pipe(offline_daemon: WindowsDaemon) -> None:
    done = offline_daemon.tool("status", "--json")

    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["running"] is True
    assert status["pid"] == offline_daemon.info["pid"]
    assert status["control_socket"].startswith(PIPE_PREFIX)
    assert offline_daemon.info["control_socket"] == status["control_socket"]


ASYNC_STATUS = """
import asyncio, json
from bridge.client.transport import AsyncControlClient
from bridge.paths import default_paths

async def main():
    answer = await AsyncControlClient(default_paths().control_socket).request("GET", "/v1/status")
    loop = type(asyncio.get_running_loop()).__name__
    print(json.dumps({"status": answer.status, "pid": answer.body["pid"], "loop": loop}))

asyncio.run(main())
"""


def test_the_asyncio_client_speaks_over_the_named_pipe(offline_daemon: WindowsDaemon) -> None:
    done = offline_daemon.wine.run(
        offline_daemon.python, ["-P", "-c", ASYNC_STATUS], env=offline_daemon.env
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "status": 200,
        "pid": offline_daemon.info["pid"],
        "loop": "ProactorEventLoop",
    }


def test_a_clean_stop_removes_daemon_json(offline_daemon: WindowsDaemon) -> None:
    code, log = offline_daemon.stop()

    assert code == 0, log
    assert "stopped" in log
    assert not (offline_daemon.runtime_dir / "daemon.json").exists()


async def test_an_expected_state_login_succeeds_over_the_named_pipe(
    daemon: WindowsDaemon, control_plane: ControlPlaneDouble
) -> None:
    state = secrets.token_urlsafe(16)
    tool = daemon.start_tool(
        "expect", "--provider", "github", "--state", state, "--wait", "--timeout", "60", "--json"
    )
    callback = f"{daemon.url}/callback/github?code=the-code&state={state}"
    try:
        async with aiohttp.ClientSession() as browser:
            # The browser comes from Linux: until the tool has registered the state (its
            # start under Wine takes a second or two), the daemon knows none (404).
            for _ in range(600):
                async with browser.get(callback) as page:
                    body = await page.text()
                    if page.status != 404:
                        break
                await asyncio.sleep(0.05)
        out, err = await asyncio.to_thread(tool.communicate, timeout=60)
    finally:
        if tool.poll() is None:
            tool.kill()

    assert page.status == 200, daemon.stop()[1]  # the daemon's log says why
    assert 'content="succeeded"' in body
    assert tool.returncode == 0, err
    login = json.loads(out)  # stdout is exactly one JSON document
    assert login["status"] == "succeeded"
    assert login["provider_id"] == "github"
    assert [call.body for call in control_plane.calls] == [{"code": "the-code", "state": state}]
