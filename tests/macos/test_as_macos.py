"""oauth-bridge run as on macOS, on Linux: the seam macOS takes, end to end, as real processes.

Every interpreter here has ``sys.platform == "darwin"`` (tests/macos/as_macos): the tool,
the daemon (started by the test as launchd would start it, or by the tool itself), and
``stop``. What only a Mac answers is stood in for, and only that: launch_activate_socket
(the stub) and the peer's credentials (Linux's, as a struct xucred). So this shows the
wiring (the platform package picks macOS, the daemon adopts launchd's sockets or binds
its own, the tool reaches it, a whole login succeeds, the 104-byte path limit is
named), not macOS's kernel: that is for the workflow's macOS runner.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import aiohttp

from bridge.paths import Paths
from bridge.platform import linux
from tests.conftest import REPO, daemon_environ, start_process, wait_for, wait_ready
from tests.control_plane_double import ControlPlaneDouble
from tests.macos.conftest import as_macos

TIMEOUT = 60


def mac_paths(home: Path) -> Paths:
    return Paths(runtime_dir=home / "run", state_dir=home / "state", config_file=home / "c.toml")


def tool(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-P", "-m", "bridge", *args],
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_tool(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    process = tool(env, *args)
    out, err = process.communicate(timeout=TIMEOUT)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


async def expected_login(
    env: dict[str, str], control_plane: ControlPlaneDouble
) -> dict[str, object]:
    """Run ``expect --wait`` as the tool, play the browser's callback, return the login."""
    state = secrets.token_urlsafe(16)
    waiting = tool(env, "expect", "--provider", "github", "--state", state, "--wait", "--json")
    runtime = Path(env["OAUTH_BRIDGE_RUNTIME_DIR"])
    try:
        # The tool registers the state (and may start the daemon first): until then the
        # daemon is not there, or knows no such state (404).
        await asyncio.to_thread(
            wait_for, lambda: (runtime / "daemon.json").exists(), timeout=TIMEOUT, what="daemon"
        )
        url = json.loads((runtime / "daemon.json").read_text())["url"]
        async with aiohttp.ClientSession() as browser:
            for _ in range(TIMEOUT * 20):
                async with browser.get(f"{url}/callback/github?code=c0de&state={state}") as page:
                    body = await page.text()
                    if page.status != 404:
                        break
                await asyncio.sleep(0.05)
        out, err = await asyncio.to_thread(waiting.communicate, timeout=TIMEOUT)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert (page.status, waiting.returncode) == (200, 0), err
    assert 'content="succeeded"' in body
    assert [call.body for call in control_plane.calls] == [{"code": "c0de", "state": state}]
    login: dict[str, object] = json.loads(out)
    return login


def test_an_interpreter_run_as_macos_takes_the_macos_seam(launch_stub: Path) -> None:
    env = as_macos(dict(os.environ), launch_stub)
    probe = (
        "import sys, bridge.platform as system, bridge.platform.macos as macos\n"
        "names = [n for n in system.__all__ if n != 'UnsupportedPlatform']\n"
        "print(sys.platform, system.NAME, system.SERVICE_MODULE,"
        " all(getattr(system, n) is getattr(macos, n) for n in names))"
    )
    result = subprocess.run(
        [sys.executable, "-P", "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["darwin", "macos", "bridge.service.launchd_run", "True"]


async def test_a_daemon_launchd_started_serves_a_login_on_the_sockets_launchd_holds(
    launch_stub: Path, mac_home: Path, control_plane: ControlPlaneDouble
) -> None:
    paths = mac_paths(mac_home)
    paths.runtime_dir.mkdir(mode=0o700)
    control = paths.control_socket
    env = as_macos(daemon_environ(paths, control_plane.url), launch_stub)
    # launchd makes the control socket (SockPathName, SockPathMode 0600) before the daemon.
    # The plist's EnvironmentVariables say that launchd holds sockets for it.
    launchd_env = {
        **env,
        "LAUNCH_STUB_CONTROL_PATH": str(control),
        "OAUTH_BRIDGE_LAUNCHD_SOCKETS": "1",
    }
    daemon = start_process(paths, launchd_env, "--idle-exit", "300")
    try:
        wait_ready(daemon)
        assert "(sockets from launchd)" in daemon.log_text()
        assert oct(control.stat().st_mode & 0o777) == "0o600"

        login = await expected_login(env, control_plane)
        assert login["status"] == "succeeded"

        stopped = run_tool(env, "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert daemon.process.wait(TIMEOUT) == 0
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
    # The socket is launchd's, which keeps listening on it for the next start.
    assert control.exists()
    assert "stopped" in daemon.log_text()


async def test_a_tool_starts_a_macos_daemon_that_binds_its_own_sockets(
    launch_stub: Path, mac_home: Path, control_plane: ControlPlaneDouble
) -> None:
    paths = mac_paths(mac_home)
    paths.config_file.write_text("", encoding="utf-8")
    # Not started by launchd: no plist said it holds sockets (and, were it asked, the
    # stub answers ESRCH, as launch_activate_socket does on a Mac).
    env = as_macos(
        daemon_environ(paths, control_plane.url, LAUNCH_STUB_NOT_MANAGED="1"), launch_stub
    )

    login = await expected_login(env, control_plane)

    assert login["status"] == "succeeded"
    info = json.loads(paths.daemon_json.read_text())
    stopped = run_tool(env, "stop")
    assert stopped.returncode == 0, stopped.stderr
    # stop waited for the process to end (macOS has no /proc: signal 0, then ps for a
    # zombie: the tool that started it is gone, and nobody may have reaped it yet).
    assert linux.process_exited(int(info["pid"]))
    assert not paths.control_socket.exists()  # its own socket: removed at exit
    assert oct(paths.runtime_dir.stat().st_mode & 0o777) == "0o700"


def test_a_control_socket_path_too_long_for_macos_is_refused_by_name(
    launch_stub: Path, mac_home: Path, control_plane: ControlPlaneDouble
) -> None:
    # 104 bytes with "/control.sock": Linux's sockaddr_un (108) takes it, a Mac's does not.
    runtime = mac_home / ("r" * (104 - len(str(mac_home)) - len("/control.sock") - 1))
    assert len(str(runtime / "control.sock")) == 104
    paths = Paths(runtime, mac_home / "state", mac_home / "c.toml")
    paths.config_file.write_text("", encoding="utf-8")
    env = as_macos(
        daemon_environ(paths, control_plane.url, LAUNCH_STUB_NOT_MANAGED="1"), launch_stub
    )

    for command in (("status",), ("expect", "--provider", "github", "--state", "s"), ("serve",)):
        result = run_tool(env, *command)
        assert result.returncode == 2, (command, result.stderr)
        assert "macOS allows 103" in result.stderr
        assert "OAUTH_BRIDGE_RUNTIME_DIR" in result.stderr
