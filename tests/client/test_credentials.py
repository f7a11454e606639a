"""A tool's own LangSmith user, and who sees a token, through the CLI and the Python API."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.client import Bridge
from bridge.paths import Paths
from tests.client.test_cli import cli, spawn
from tests.client.test_login import CONSENTING_BROWSER, browser_env, consent, until
from tests.conftest import DaemonProcess, wait_ready
from tests.control_plane_double import ControlPlaneDouble

KEY_B = "key-of-user-b-0789"

# A browser that shows it was opened, then waits (bounded) for the test to let it go on.
HELD_BROWSER = (
    r"""
import os, sys, time
held = sys.argv.pop(4)
open(held + ".opened", "w").write(sys.argv[1])
deadline = time.monotonic() + 20
while not os.path.exists(held + ".go") and time.monotonic() < deadline:
    time.sleep(0.01)
"""
    + CONSENTING_BROWSER
)


@pytest.fixture
async def daemon(daemon_process: Any, control_plane: ControlPlaneDouble) -> DaemonProcess:
    """A daemon started with the double's first key (user-a); the double knows user-b's too."""
    control_plane.add_user(KEY_B, "user-b")
    # At debug level: every request is logged, and still no token may be.
    proc: DaemonProcess = daemon_process(OAUTH_BRIDGE_LOG_LEVEL="debug")
    info = await asyncio.to_thread(wait_ready, proc)
    control_plane.allow("github", f"{info['url']}/callback/github")
    return proc


async def test_login_from_another_key_is_made_as_that_user_without_a_warning(
    cli_env: dict[str, str],
    daemon: DaemonProcess,
    control_plane: ControlPlaneDouble,
    tmp_path: Path,
) -> None:
    env, _ = browser_env({**cli_env, "LANGSMITH_API_KEY": KEY_B}, tmp_path)

    result = await asyncio.to_thread(
        cli, env, "login", "--provider", "github", "--scope", "repo", "--json"
    )

    assert result.returncode == 0, result.stderr
    login = json.loads(result.stdout)
    assert login["credentials"] == "caller"
    assert login["result"]["token"] == control_plane.tokens_of["user-b"][("github", None)]
    assert control_plane.tokens == {}
    assert "warning" not in result.stderr


async def test_the_python_api_takes_a_key_given_explicitly(
    daemon: DaemonProcess, control_plane: ControlPlaneDouble, paths: Paths
) -> None:
    def tool() -> tuple[str, str | None]:
        bridge = Bridge(start=False, paths=paths, api_key=KEY_B)
        login = bridge.login("github", ["repo"], callback="loopback")
        consent(login.open_url)
        done = login.wait(timeout=10)
        return done.credentials, done.token

    credentials, token = await asyncio.to_thread(tool)

    assert credentials == "caller"
    assert token == control_plane.tokens_of["user-b"][("github", None)]


async def test_no_token_in_status_repr_or_any_command_line_and_no_state_either(
    cli_env: dict[str, str],
    daemon: DaemonProcess,
    control_plane: ControlPlaneDouble,
    paths: Paths,
    tmp_path: Path,
) -> None:
    script = tmp_path / "held_browser.py"
    script.write_text(HELD_BROWSER, encoding="utf-8")
    held = tmp_path / "held"
    landed = tmp_path / "landed.txt"
    env = {
        **cli_env,
        "DISPLAY": ":99",
        "BROWSER": f"{sys.executable} {script} %s {landed} code=c-1 {held}",
        "OAUTH_BRIDGE_LOG_LEVEL": "debug",
    }
    waiting = spawn(env, "login", "--provider", "github", "--scope", "repo", "--json")
    auth = await until(lambda: next(iter(control_plane.auth_requests.values()), None))
    opened = Path(f"{held}.opened")
    await until(lambda: opened.exists() or None)
    command_lines = await asyncio.to_thread(every_command_line)
    await asyncio.to_thread(Path(f"{held}.go").write_text, "")
    out, err = await asyncio.to_thread(waiting.communicate, timeout=30)
    token = control_plane.tokens[("github", None)]
    status_json = await asyncio.to_thread(cli, cli_env, "status", "--json")
    status_text = await asyncio.to_thread(cli, cli_env, "status")

    def shown() -> tuple[str, str]:
        bridge = Bridge(start=False, paths=paths)
        login = bridge.login("github", ["repo"], callback="loopback")  # already connected
        assert login.token == token
        return repr(login), repr(login.wait(timeout=0))

    reprs = await asyncio.to_thread(shown)
    command_lines_after = await asyncio.to_thread(every_command_line)

    assert waiting.returncode == 0, err
    assert json.loads(out)["result"]["token"] == token  # the creator has it
    assert auth.state.encode() not in command_lines
    assert token.encode() not in command_lines + command_lines_after
    assert "GET /v1/" in daemon.log_text()  # the log is at debug level indeed
    handed = await asyncio.to_thread(opened.read_text)
    assert handed.startswith("http://127.0.0.1:")
    assert "/go/" in handed
    places = {
        "status --json": status_json.stdout,
        "status": status_text.stdout,
        "login's stderr": err,
        "repr": " ".join(reprs),
        "daemon log": daemon.log_text(),
    }
    places.update(
        {
            str(f): f.read_bytes().decode("latin-1")
            for f in paths.state_dir.rglob("*")
            if f.is_file()
        }
    )
    for where, text in places.items():
        assert token not in text, where
    assert "secret" not in " ".join(reprs)


def every_command_line() -> bytes:
    """Read every process's command line, as any local user can."""
    found = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            found.append(path.read_bytes())
        except OSError:  # a process that ended meanwhile
            continue
    return b"\n".join(found)


async def test_connections_and_disconnect_on_the_command_line(
    cli_env: dict[str, str], daemon: DaemonProcess, control_plane: ControlPlaneDouble
) -> None:
    control_plane.tokens_of["user-b"][("github", None)] = "tok-b"
    as_b = {**cli_env, "LANGSMITH_API_KEY": KEY_B}

    listed = await asyncio.to_thread(cli, as_b, "connections", "--json")
    text = await asyncio.to_thread(cli, as_b, "connections")
    gone = await asyncio.to_thread(cli, as_b, "disconnect", "github")
    after = await asyncio.to_thread(cli, as_b, "connections", "--json")
    refused = await asyncio.to_thread(
        cli, {**cli_env, "LANGSMITH_API_KEY": "nobodys-key"}, "disconnect", "github"
    )

    assert (listed.returncode, json.loads(listed.stdout)) == (
        0,
        {"connections": [{"provider_id": "github", "name": "GitHub", "connected": True}]},
    )
    assert "✓ connected" in text.stdout
    assert "GitHub" in text.stdout
    assert gone.returncode == 0, gone.stderr
    assert json.loads(after.stdout)["connections"][0]["connected"] is False
    assert control_plane.revoked == [("user-b", "github")]
    assert refused.returncode == 10
    assert "refused the credentials" in refused.stderr


def test_connections_without_a_daemon_exits_3(cli_env: dict[str, str]) -> None:
    result = cli(cli_env, "connections")

    assert result.returncode == 3


async def test_the_async_twin_lists_and_disconnects_too(
    daemon: DaemonProcess, control_plane: ControlPlaneDouble, paths: Paths
) -> None:
    from bridge.client import AsyncBridge

    control_plane.tokens[("github", None)] = "tok-a"
    bridge = AsyncBridge(start=False, paths=paths)

    before = await bridge.connections()
    gone = await bridge.disconnect("github")
    after = await bridge.connections()

    assert [(c.provider_id, c.connected) for c in before] == [("github", True)]
    assert (gone.provider_id, gone.connected) == ("github", False)
    assert [(c.provider_id, c.connected) for c in after] == [("github", False)]


def test_scopes_as_a_bare_string_is_a_type_error(paths: Paths) -> None:
    from bridge.client.api import _Core

    with pytest.raises(TypeError, match="list of strings"):
        _Core(paths).login_request(
            "github",
            "openid",  # type: ignore[arg-type]  # the mistake under test
            user_id=None,
            agent_id=None,
            force_new=False,
            ttl_seconds=60,
        )


def test_the_environments_credentials_go_with_each_call() -> None:
    from bridge.client.api import caller_credentials

    environ = {
        "LANGSMITH_API_KEY": "k",
        "LANGSMITH_WORKSPACE_ID": "w",
        "OAUTH_BRIDGE_BEARER_TOKEN": "b",
    }

    assert caller_credentials(
        api_key=None, workspace_id=None, bearer_token=None, environ=environ
    ) == {"X-Api-Key": "k", "X-Tenant-Id": "w", "Authorization": "Bearer b"}
    assert caller_credentials(api_key="x", workspace_id=None, bearer_token=None, environ={}) == {
        "X-Api-Key": "x"
    }
