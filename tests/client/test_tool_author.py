"""What a tool author trips over, fixed: --json on failure, pipes, Ctrl-C, a daemon gone, slowness."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from bridge.client import AsyncBridge, Bridge, ControlPlaneRefused
from bridge.client.transport import ControlClient
from bridge.paths import Paths, read_daemon_json
from tests.client.test_cli import cli, spawn
from tests.client.test_login import until
from tests.conftest import REPO, DaemonProcess, wait_ready
from tests.control_plane_double import ControlPlaneDouble


@pytest.fixture
async def daemon(daemon_process: Any, control_plane: ControlPlaneDouble) -> DaemonProcess:
    proc: DaemonProcess = daemon_process()
    info = await asyncio.to_thread(wait_ready, proc)
    control_plane.allow("github", f"{info['url']}/callback/github")
    return proc


async def test_login_json_prints_a_document_when_langsmith_refuses(
    cli_env: dict[str, str], daemon: DaemonProcess, control_plane: ControlPlaneDouble
) -> None:
    control_plane.agent_auth_enabled = False

    result = await asyncio.to_thread(
        cli, cli_env, "login", "--provider", "github", "--scope", "repo", "--json"
    )

    assert result.returncode == 10
    document = json.loads(result.stdout)
    assert document["error"] == "control_plane_rejected"
    assert document["control_plane_status"] == 403
    assert "Agent Auth" in document["message"]


def test_json_without_a_daemon_is_a_document_too(cli_env: dict[str, str]) -> None:
    result = cli(
        cli_env, "login", "--provider", "github", "--scope", "repo", "--json", "--no-start"
    )

    assert result.returncode == 3
    assert json.loads(result.stdout)["error"] == "daemon_unavailable"


async def test_a_reader_that_goes_away_gets_silence_not_a_traceback(
    cli_env: dict[str, str], daemon: DaemonProcess
) -> None:
    def run() -> tuple[int, str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "status"],
            env=cli_env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        proc.stdout.close()  # `| head -0`: the reader is gone before the first line
        _, err = proc.communicate(timeout=30)
        return proc.returncode, err.decode()

    code, err = await asyncio.to_thread(run)

    assert "Traceback" not in err
    assert "BrokenPipeError" not in err
    assert code == 141


async def test_a_waiting_login_whose_daemon_went_away_starts_one_and_ends_right(
    cli_env: dict[str, str],
    daemon: DaemonProcess,
    control_plane: ControlPlaneDouble,
    paths: Paths,
) -> None:
    waiting = spawn(
        cli_env, "login", "--provider", "github", "--scope", "repo", "--no-open", "--json"
    )
    auth = await until(lambda: next(iter(control_plane.auth_requests.values()), None))
    daemon.process.send_signal(signal.SIGTERM)  # what `oauth-bridge stop` does
    await asyncio.to_thread(daemon.process.wait, 15)

    def new_daemon() -> dict[str, Any] | None:
        info = read_daemon_json(paths.daemon_json)
        return info if info is not None and info["pid"] != daemon.process.pid else None

    info = await until(new_daemon, 30)
    async with aiohttp.ClientSession() as browser:
        query = urlencode({"code": "c-revived", "state": auth.state})
        async with browser.get(f"{info['url']}/callback/github?{query}") as page:
            assert page.status == 200
    out, err = await asyncio.to_thread(waiting.communicate, timeout=30)

    assert waiting.returncode == 0, err
    assert json.loads(out)["status"] == "succeeded"
    assert [c.body["code"] for c in control_plane.calls] == ["c-revived"]


async def test_an_async_wait_cancelled_by_wait_for_cancels_the_login(
    daemon: DaemonProcess, paths: Paths
) -> None:
    bridge = AsyncBridge(start=False, paths=paths)
    login = await bridge.login("github", ["repo"], callback="loopback")

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(login.wait(), 0.3)
    after = await bridge.get(login.id)

    assert after.status == "cancelled"


async def test_a_blocking_wait_interrupted_by_ctrl_c_cancels_the_login(
    cli_env: dict[str, str], daemon: DaemonProcess, paths: Paths
) -> None:
    tool = (
        "import os, signal, threading\n"
        "from bridge.client import Bridge\n"
        "bridge = Bridge(start=False)\n"
        "login = bridge.login('github', ['repo'], callback='loopback')\n"
        "threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
        "try:\n"
        "    login.wait()\n"
        "except KeyboardInterrupt:\n"
        "    print(bridge.get(login.id).status)\n"
    )

    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", tool],
        env=cli_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.stdout.strip() == "cancelled", result.stderr


async def test_a_slow_langsmith_is_said_on_the_terminal_and_bounded_in_the_api(
    cli_env: dict[str, str], daemon: DaemonProcess, control_plane: ControlPlaneDouble, paths: Paths
) -> None:
    control_plane.authenticate_gate = asyncio.Event()
    waiting = spawn(cli_env, "login", "--provider", "github", "--scope", "repo", "--no-open")

    def bounded() -> str:
        try:
            Bridge(start=False, paths=paths).login("github", ["repo"], timeout=1)
        except ControlPlaneRefused as exc:
            return f"{exc.error}: {exc.message}"
        return "no error"

    said = await asyncio.to_thread(bounded)
    assert waiting.stderr is not None
    first = await asyncio.to_thread(waiting.stderr.readline)
    control_plane.authenticate_gate.set()
    waiting.send_signal(signal.SIGINT)
    await asyncio.to_thread(waiting.communicate, timeout=30)

    assert said.startswith("control_plane_unreachable: no answer within 1s")
    assert first.strip() == "Contacting LangSmith..."


async def test_the_terminal_names_the_provider_as_the_pages_do(
    cli_env: dict[str, str], daemon_process: Any, control_plane: ControlPlaneDouble, paths: Paths
) -> None:
    paths.config_file.write_text('provider_names = { github = "GitHub" }\n', encoding="utf-8")
    await asyncio.to_thread(wait_ready, daemon_process())
    control_plane.tokens[("github", None)] = "tok"

    result = await asyncio.to_thread(
        cli, cli_env, "login", "--provider", "github", "--scope", "repo"
    )

    assert result.returncode == 0, result.stderr
    assert "✓ GitHub was already connected." in result.stderr


def test_login_help_lists_its_own_exit_codes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "login", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert "without --wait" not in result.stdout
    assert "0   connected (or already connected)" in result.stdout


def test_a_bare_string_of_scopes_is_a_type_error(tmp_path: Path) -> None:
    from bridge.client.api import _Core

    core = _Core(Paths(tmp_path, tmp_path, tmp_path / "c.toml"))
    with pytest.raises(TypeError):
        core.login_request(
            "github",
            "openid",  # type: ignore[arg-type]  # the mistake under test
            user_id=None,
            agent_id=None,
            force_new=False,
            ttl_seconds=60,
        )


def test_a_bad_config_is_exit_2_for_login_as_the_docs_say(
    cli_env: dict[str, str], paths: Paths
) -> None:
    paths.config_file.write_text('port = "x"\n', encoding="utf-8")

    result = cli(cli_env, "login", "--provider", "github", "--scope", "repo", "--json")

    assert result.returncode == 2, result.stderr
    assert json.loads(result.stdout)["error"] == "usage"
    assert "key 'port'" in result.stderr


def test_a_credential_with_a_non_ascii_character_is_a_clear_error(
    cli_env: dict[str, str],
) -> None:
    env = {**cli_env, "LANGSMITH_API_KEY": "k\u00e9y"}

    result = cli(env, "login", "--provider", "github", "--scope", "repo", "--json")

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "k\u00e9y" not in result.stderr + result.stdout
    assert json.loads(result.stdout)["error"] == "usage"


async def test_a_start_whose_tool_went_away_is_dropped_not_registered(
    daemon: DaemonProcess, control_plane: ControlPlaneDouble, paths: Paths
) -> None:
    control_plane.authenticate_gate = asyncio.Event()
    body = json.dumps({"provider_id": "github", "scopes": ["repo"]}).encode()
    request = (
        b"POST /v1/logins HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    _, writer = await asyncio.open_unix_connection(str(paths.control_socket))
    writer.write(request)
    await writer.drain()
    await asyncio.wait_for(control_plane.authenticating.wait(), 10)
    writer.close()  # the tool is gone (Ctrl-C) while LangSmith takes its time
    await writer.wait_closed()
    control_plane.authenticating.clear()

    def second() -> str:
        return Bridge(start=False, paths=paths).login("github", ["repo"], callback="loopback").id

    kept = asyncio.create_task(asyncio.to_thread(second))
    await asyncio.wait_for(control_plane.authenticating.wait(), 10)
    control_plane.authenticate_gate.set()
    kept_id = await kept
    listed = await asyncio.to_thread(
        ControlClient(paths.control_socket).request, "GET", "/v1/logins"
    )

    assert [login["id"] for login in listed.body["logins"]] == [kept_id]
    assert len(control_plane.auth_requests) == 1  # the first was never made
