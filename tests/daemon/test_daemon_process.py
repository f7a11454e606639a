"""The daemon as a real process: one per user, signals, SIGKILL and restart, bad start-ups."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.client.transport import ControlClient
from bridge.paths import Paths, write_daemon_json
from tests.conftest import REPO, DaemonProcess, daemon_environ, free_port, wait_ready
from tests.control_plane_double import ControlPlaneDouble


def register(paths: Paths, state: str, provider: str = "github") -> dict[str, Any]:
    answer = ControlClient(paths.control_socket).request(
        "POST", "/v1/logins", {"provider_id": provider, "state": state}
    )
    assert answer.status == 201, answer.body
    body: dict[str, Any] = answer.body
    return body


def get_login(paths: Paths, login_id: str) -> dict[str, Any]:
    answer = ControlClient(paths.control_socket).request("GET", f"/v1/logins/{login_id}")
    assert answer.status == 200
    body: dict[str, Any] = answer.body
    return body


async def hit(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status


async def ready(proc: DaemonProcess) -> dict[str, Any]:
    return await asyncio.to_thread(wait_ready, proc)


async def exit_code(proc: DaemonProcess, seconds: float = 20) -> int:
    return await asyncio.to_thread(proc.process.wait, seconds)


def run_serve(paths: Paths, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    if not paths.config_file.exists():
        paths.config_file.write_text("", encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "bridge", "serve", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def test_sigterm_removes_the_runtime_files_and_exits_0(
    daemon_process: Any, paths: Paths
) -> None:
    proc: DaemonProcess = daemon_process()
    await ready(proc)
    assert paths.control_socket.exists()

    proc.process.send_signal(signal.SIGTERM)

    assert await exit_code(proc) == 0
    assert not paths.daemon_json.exists()
    assert not paths.control_socket.exists()


@dataclass
class ForwardInFlight:
    """A daemon on a fixed port whose one forward hangs at the control plane."""

    proc: DaemonProcess
    port: int
    url: str
    login: dict[str, Any]
    browser: asyncio.Task[int]


async def forward_in_flight(
    daemon_process: Any, paths: Paths, control_plane: ControlPlaneDouble, state: str
) -> ForwardInFlight:
    port = free_port()
    proc: DaemonProcess = daemon_process("--port", str(port))
    info = await ready(proc)
    login = register(paths, state)
    control_plane.script.hang = True
    browser = asyncio.create_task(hit(f"{info['url']}/callback/github?code=c&state={state}"))
    await asyncio.wait_for(control_plane.called.wait(), 10)
    return ForwardInFlight(proc, port, str(info["url"]), login, browser)


async def test_sigint_lets_an_in_flight_forward_finish(
    daemon_process: Any, paths: Paths, control_plane: ControlPlaneDouble
) -> None:
    flight = await forward_in_flight(daemon_process, paths, control_plane, "st-drain")
    proc, port, login, browser = flight.proc, flight.port, flight.login, flight.browser

    proc.process.send_signal(signal.SIGINT)
    # It stopped accepting, but the forward under way still gets its answer.
    await asyncio.to_thread(_wait_refused, port)
    control_plane.release.set()

    assert await browser == 200
    assert await exit_code(proc) == 0
    again: DaemonProcess = daemon_process("--port", str(port))
    await ready(again)
    assert get_login(paths, login["id"])["status"] == "succeeded"
    assert len(control_plane.calls) == 1


def _wait_refused(port: int) -> None:
    from tests.conftest import wait_for

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        return False

    wait_for(refused, what="the listener to close")


async def test_a_killed_daemon_keeps_its_pending_logins_after_restart(
    daemon_process: Any, paths: Paths, control_plane: ControlPlaneDouble
) -> None:
    port = free_port()
    first: DaemonProcess = daemon_process("--port", str(port))
    await ready(first)
    login = register(paths, "st-kill")

    first.process.kill()
    await exit_code(first)
    second: DaemonProcess = daemon_process("--port", str(port))
    info = await ready(second)

    assert get_login(paths, login["id"])["status"] == "pending"
    assert await hit(f"{info['url']}/callback/github?code=c&state=st-kill") == 200
    assert get_login(paths, login["id"])["status"] == "succeeded"
    assert [c.body for c in control_plane.calls] == [{"code": "c", "state": "st-kill"}]


async def test_a_daemon_killed_mid_forward_never_forwards_again(
    daemon_process: Any, paths: Paths, control_plane: ControlPlaneDouble
) -> None:
    flight = await forward_in_flight(daemon_process, paths, control_plane, "st-mid")
    first, port, login, browser = flight.proc, flight.port, flight.login, flight.browser

    first.process.kill()
    await exit_code(first)
    with pytest.raises(aiohttp.ClientError):
        await browser
    second: DaemonProcess = daemon_process("--port", str(port))
    await ready(second)

    failed = get_login(paths, login["id"])
    assert (failed["status"], failed["result"]["error"]) == ("failed", "interrupted")
    assert await hit(f"{flight.url}/callback/github?code=c&state=st-mid") == 200
    assert len(control_plane.calls) == 1
    assert "interrupted" in second.log_text()


async def test_a_second_serve_exits_3_and_names_the_running_daemon(
    daemon_process: Any, paths: Paths, control_plane: ControlPlaneDouble
) -> None:
    first: DaemonProcess = daemon_process()
    info = await ready(first)

    second = await asyncio.to_thread(run_serve, paths, daemon_environ(paths, control_plane.url))

    assert second.returncode == 3
    assert info["url"] in second.stderr
    assert "already running" in second.stderr
    assert "Traceback" not in second.stderr


async def test_a_port_held_by_another_program_exits_3_saying_so(
    paths: Paths, control_plane: ControlPlaneDouble
) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]

        result = await asyncio.to_thread(
            run_serve, paths, daemon_environ(paths, control_plane.url), "--port", str(port)
        )

    assert result.returncode == 3
    assert f"port {port}" in result.stderr
    assert "another program" in result.stderr
    assert not paths.daemon_json.exists()


async def test_a_port_held_by_another_oauth_bridge_names_it(
    daemon_process: Any, paths: Paths, tmp_path: Path, control_plane: ControlPlaneDouble
) -> None:
    port = free_port()
    first: DaemonProcess = daemon_process("--port", str(port))
    await ready(first)
    elsewhere = Paths(
        runtime_dir=tmp_path / "run2", state_dir=tmp_path / "state2", config_file=paths.config_file
    )

    result = await asyncio.to_thread(
        run_serve, elsewhere, daemon_environ(elsewhere, control_plane.url), "--port", str(port)
    )

    assert result.returncode == 3
    assert "another oauth-bridge" in result.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("port = 'many'\n", "key 'port': must be a TOML number, not the string 'many'"),
        ("port = '48770'\n", "key 'port': must be a TOML number, not the string '48770'"),
        ("port = 1.5\n", "key 'port': Input should be a valid integer"),
        (
            "control_plane_url = 'http://cp.example.org'\n",
            "key 'control_plane_url': control_plane_url http://cp.example.org/ is plain http",
        ),
        ("control_plane_url = 'api.host'\n", "must be an absolute http(s) URL such as https://"),
        ("port = 70000\n", "key 'port': Input should be less than or equal to 65535"),
        ("colour = 'blue'\n", "key 'colour': unknown key"),
        ("host = '0.0.0.0'\n", "key 'host': 0.0.0.0 is not a loopback address"),
        ("this is = not toml\n", "not valid TOML"),
        ("api_key_file = '/nonexistent/key'\n", "key 'api_key_file': cannot read /nonexistent/key"),
    ],
)
def test_a_bad_config_file_exits_2_naming_file_key_and_problem(
    paths: Paths, content: str, expected: str
) -> None:
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(content, encoding="utf-8")
    env = daemon_environ(paths, "http://127.0.0.1:9")
    # The environment would override the file's port, api_key_file and control plane.
    del env["OAUTH_BRIDGE_PORT"], env["LANGSMITH_API_KEY"]
    del env["OAUTH_BRIDGE_CONTROL_PLANE_URL"]

    result = run_serve(paths, env)

    assert result.returncode == 2
    assert str(paths.config_file) in result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--host", "192.168.1.10"], {}, "option --host: 192.168.1.10 is not a loopback address"),
        (["--host", "0.0.0.0"], {}, "not a loopback address"),
        ([], {"OAUTH_BRIDGE_PORT": "-1"}, "environment variable OAUTH_BRIDGE_PORT"),
        ([], {"OAUTH_BRIDGE_CONTROL_PLANE_URL": "ftp://x"}, "OAUTH_BRIDGE_CONTROL_PLANE_URL"),
        (["--control-plane", "nope"], {}, "option --control-plane: must be an absolute http(s)"),
        (["--log-level", "LOUD"], {}, "invalid choice: 'loud'"),
        (
            ["--control-plane", "http://10.0.0.8"],
            {},
            "option --control-plane: control_plane_url http://10.0.0.8/ is plain http",
        ),
    ],
)
def test_bad_flags_and_environment_exit_2(
    paths: Paths, args: list[str], env: dict[str, str], expected: str
) -> None:
    result = run_serve(paths, daemon_environ(paths, "http://127.0.0.1:9", **env), *args)

    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_flags_beat_environment_beat_the_config_file(paths: Paths, tmp_path: Path) -> None:
    from bridge.daemon.config import load_config

    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text("port = 1111\nlog_level = 'error'\npending_limit = 7\n")
    env = {"OAUTH_BRIDGE_PORT": "2222", "OAUTH_BRIDGE_LOG_LEVEL": "warning"}

    config = load_config(
        config_file=paths.config_file, explicit_file=True, environ=env, flags={"port": 3333}
    )

    assert (
        config.settings.port,
        config.settings.log_level,
        config.settings.pending_limit,
    ) == (3333, "warning", 7)


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701])
def test_a_runtime_dir_open_to_others_is_refused(paths: Paths, mode: int) -> None:
    paths.runtime_dir.mkdir(parents=True)
    os.chmod(paths.runtime_dir, mode)

    result = run_serve(paths, daemon_environ(paths, "http://127.0.0.1:9"))

    assert result.returncode == 2
    assert "open to other users" in result.stderr


def test_a_runtime_dir_of_another_user_is_refused(paths: Paths) -> None:
    if os.getuid() != 0:
        pytest.fail("this test needs root to chown (CI runs as root)")
    paths.runtime_dir.mkdir(parents=True, mode=0o700)
    os.chown(paths.runtime_dir, 65534, 65534)

    result = run_serve(paths, daemon_environ(paths, "http://127.0.0.1:9"))

    assert result.returncode == 2
    assert "owned by uid 65534" in result.stderr


async def test_the_runtime_dir_is_created_0700_and_daemon_json_matches_the_contract(
    daemon_process: Any, paths: Paths
) -> None:
    proc: DaemonProcess = daemon_process()
    info = await ready(proc)

    assert paths.runtime_dir.stat().st_mode & 0o777 == 0o700
    assert {"pid", "url", "control_socket", "version"} == set(info)
    assert (proc.process.pid, str(paths.control_socket)) == (info["pid"], info["control_socket"])
    assert info["url"].startswith("http://127.0.0.1:")
    assert json.loads(paths.daemon_json.read_text()) == info


async def test_two_daemons_never_share_a_login_store(
    daemon_process: Any, paths: Paths, tmp_path: Path, control_plane: ControlPlaneDouble
) -> None:
    first: DaemonProcess = daemon_process()
    await ready(first)
    same_store = Paths(
        runtime_dir=tmp_path / "run2", state_dir=paths.state_dir, config_file=paths.config_file
    )

    result = await asyncio.to_thread(
        run_serve, same_store, daemon_environ(same_store, control_plane.url)
    )

    assert result.returncode == 3
    assert "uses the login store" in result.stderr


def test_a_state_dir_that_is_a_file_exits_2_in_one_line(paths: Paths) -> None:
    paths.state_dir.parent.mkdir(parents=True, exist_ok=True)
    paths.state_dir.write_text("not a directory")

    result = run_serve(paths, daemon_environ(paths, "http://127.0.0.1:9"))

    assert result.returncode == 2
    assert f"cannot use the state dir {paths.state_dir}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_runtime_dir_under_a_file_exits_2_in_one_line(paths: Paths, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    under_file = Paths(
        runtime_dir=blocker / "run", state_dir=paths.state_dir, config_file=paths.config_file
    )

    result = run_serve(under_file, daemon_environ(under_file, "http://127.0.0.1:9"))

    assert result.returncode == 2
    assert f"cannot create {blocker / 'run'}" in result.stderr
    assert "Traceback" not in result.stderr


def test_daemon_json_is_written_by_rename_from_the_same_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renames: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy(src: Any, dst: Any) -> None:
        renames.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    target = tmp_path / "daemon.json"

    write_daemon_json(target, {"pid": 1})

    assert [(src.parent, dst) for src, dst in renames] == [(tmp_path, target)]
    assert json.loads(target.read_text()) == {"pid": 1}
    assert target.stat().st_mode & 0o777 == 0o600


async def test_daemon_json_is_written_only_after_every_listener_accepts(
    start_daemon: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_start = web.SockSite.start
    real_write = write_daemon_json

    async def start(site: web.SockSite) -> None:
        await real_start(site)
        events.append("site")

    def write(path: Path, info: dict[str, object]) -> None:
        events.append("daemon.json")
        real_write(path, info)

    monkeypatch.setattr(web.SockSite, "start", start)
    monkeypatch.setattr("bridge.daemon.lifecycle.write_daemon_json", write)

    await start_daemon()

    assert events[-1] == "daemon.json"
    assert events.count("site") >= 2  # the TCP listener(s) and control.sock


def test_a_relative_api_key_file_is_read_next_to_the_config_file(
    paths: Paths, tmp_path: Path
) -> None:
    from bridge.daemon.config import load_config

    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    (paths.config_file.parent / "api-key").write_text("key-beside-the-config\n")
    paths.config_file.write_text("api_key_file = 'api-key'\n")

    config = load_config(config_file=paths.config_file, explicit_file=True, environ={})

    assert config.credentials.api_key == "key-beside-the-config"
    assert config.credentials.sources["api_key"] == "file"


def test_a_missing_api_key_file_is_named_by_its_absolute_path(paths: Paths) -> None:
    from bridge.daemon.config import load_config
    from bridge.errors import ConfigError

    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text("api_key_file = 'missing-key'\n")

    with pytest.raises(ConfigError) as refused:
        load_config(config_file=paths.config_file, explicit_file=True, environ={})

    assert f"cannot read {paths.config_file.parent / 'missing-key'}" in refused.value.message


def test_the_log_level_flag_takes_any_case() -> None:
    from bridge.cli import build_parser

    args = build_parser("serve").parse_args(["serve", "--log-level", "DEBUG"])

    assert args.log_level == "debug"


async def test_a_squatters_server_header_never_reaches_the_terminal(
    paths: Paths, control_plane: ControlPlaneDouble
) -> None:
    import threading

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(8)
    port = squatter.getsockname()[1]
    answer = (
        b"HTTP/1.1 200 OK\r\nServer: oauth-bridge/1.0\x1b]0;owned\x07\x1b[2J\r\n"
        b"Content-Length: 2\r\nConnection: close\r\n\r\nok"
    )

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = squatter.accept()
                with conn:
                    conn.recv(4096)
                    conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    try:
        env = daemon_environ(paths, control_plane.url)
        env.pop("OAUTH_BRIDGE_PORT")
        result = await asyncio.to_thread(
            run_serve, paths, env, "--port", str(port), "--host", "127.0.0.1"
        )
    finally:
        squatter.close()

    assert result.returncode == 3
    assert "\x1b" not in result.stderr
    assert "in use by another program" in result.stderr
