"""``oauth-bridge doctor`` passes on a healthy setup and names each planted problem."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bridge.client.reach import Files, decide
from bridge.paths import Paths, read_daemon_json
from tests.client.test_cli import cli
from tests.control_plane_double import ControlPlaneDouble


async def doctor(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    result = await asyncio.to_thread(cli, env, "doctor", "--json", *args)
    report: dict[str, Any] = json.loads(result.stdout)
    return result.returncode, report


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in report["checks"]}


async def test_a_healthy_setup_passes_every_check(
    cli_env: dict[str, str], paths: Paths, control_plane: ControlPlaneDouble
) -> None:
    await asyncio.to_thread(cli, cli_env, "expect", "--provider", "github", "--state", "h")
    info = read_daemon_json(paths.daemon_json)
    assert info is not None
    control_plane.allow("github", f"{info['url']}/callback/github")

    code, report = await doctor(cli_env)

    assert code == 0, report
    assert report["ok"] is True
    checks = by_name(report)
    assert {
        "runtime dir",
        "state dir",
        "daemon",
        "credentials",
        "control plane",
        "provider github",
    } <= set(checks)
    assert all(c["ok"] is not False for c in report["checks"])


async def test_a_provider_that_does_not_allow_our_callback_is_named_with_the_fix(
    cli_env: dict[str, str], control_plane: ControlPlaneDouble
) -> None:
    code, report = await doctor(cli_env)  # it starts the daemon itself

    check = by_name(report)["provider github"]
    assert code == 1
    assert check["ok"] is False
    assert "oauth-bridge providers allow-loopback github" in check["fix"]


async def test_refused_credentials_fail_the_control_plane_check(
    cli_env: dict[str, str], control_plane: ControlPlaneDouble
) -> None:
    control_plane.api_key = "another-key"

    code, report = await doctor(cli_env)

    check = by_name(report)["control plane"]
    assert (code, check["ok"]) == (1, False)
    assert "refused" in check["detail"]


async def test_an_unreachable_control_plane_fails_its_check(cli_env: dict[str, str]) -> None:
    env = {
        **cli_env,
        "OAUTH_BRIDGE_CONTROL_PLANE_URL": "http://127.0.0.1:9",
        "OAUTH_BRIDGE_FORWARD_DEADLINE_SECONDS": "0.3",
    }

    code, report = await doctor(env)

    check = by_name(report)["control plane"]
    assert (code, check["ok"]) == (1, False)
    assert "cannot be reached" in check["detail"]


async def test_no_credential_fails_its_check(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "LANGSMITH_API_KEY": "", "OAUTH_BRIDGE_BEARER_TOKEN": ""}

    code, report = await doctor(env)

    check = by_name(report)["credentials"]
    assert (code, check["ok"]) == (1, False)
    assert "LANGSMITH_API_KEY" in check["fix"]


async def test_a_state_dir_open_to_others_fails_its_check(
    cli_env: dict[str, str], paths: Paths
) -> None:
    paths.state_dir.mkdir(parents=True)
    paths.state_dir.chmod(0o755)

    code, report = await doctor(cli_env, "--no-start")

    check = by_name(report)["state dir"]
    assert (code, check["ok"]) == (1, False)
    assert "open to other users" in check["detail"]


async def test_no_daemon_and_a_port_held_by_another_program_are_named(
    cli_env: dict[str, str],
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        env = {**cli_env, "OAUTH_BRIDGE_PORT": str(squatter.getsockname()[1])}

        code, report = await doctor(env, "--no-start")

    check = by_name(report)["daemon"]
    assert (code, check["ok"]) == (1, False)
    assert "held by another program" in check["fix"]


async def test_a_browser_on_this_machine_is_seen_reaching_the_daemon(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    script = tmp_path / "browser.py"
    script.write_text("import sys, urllib.request\nurllib.request.urlopen(sys.argv[1]).read()\n")
    env = {**cli_env, "DISPLAY": ":99", "BROWSER": f"{sys.executable} {script} %s"}

    _, seen = await doctor(env, "--browser", "--browser-timeout", "20")
    _, unseen = await doctor(
        {**cli_env, "DISPLAY": ":99", "BROWSER": "true"}, "--browser", "--browser-timeout", "0.5"
    )

    assert by_name(seen)["browser"]["ok"] is True
    assert by_name(unseen)["browser"]["ok"] is False


async def test_an_ssh_session_gets_the_port_forwarding_line(cli_env: dict[str, str]) -> None:
    env = {**cli_env, **NOWHERE, "SSH_CONNECTION": "10.0.0.2 50000 10.0.0.1 22"}

    _, report = await doctor(env)

    advice = [c for c in report["checks"] if c["name"] == "environment"]
    assert any("ssh -L" in c["fix"] and "127.0.0.1" in c["fix"] for c in advice)
    assert all(c["ok"] is None for c in advice)  # advice, not a failure


# Every variable the callback rule reads, emptied: a test sets only the place it means.
NOWHERE = {
    name: ""
    for name in (
        "BROWSER",
        "CODESPACES",
        "SSH_CONNECTION",
        "SSH_CLIENT",
        "SSH_TTY",
        "WSL_DISTRO_NAME",
        "WSL_INTEROP",
        "VSCODE_IPC_HOOK_CLI",
        "TERM_PROGRAM",
        "OAUTH_BRIDGE_CALLBACK",
    )
}
SSH_WHY = "an SSH session without a BROWSER helper: the browser runs on another machine"


def test_doctor_says_which_callback_the_rule_took_and_why(cli_env: dict[str, str]) -> None:
    env = {**cli_env, **NOWHERE, "SSH_CONNECTION": "10.0.0.2 50000 10.0.0.1 22"}

    as_json = json.loads(cli(env, "doctor", "--json", "--no-start").stdout)
    for_people = cli(env, "doctor", "--no-start").stderr

    assert as_json["callback"] == {
        "decided": "hosted",
        "why": SSH_WHY,
        "environment": "ssh",
        "can_open_browser": False,
        "set_by": None,
    }
    assert by_name(as_json)["callback"]["ok"] is None  # information, not a failure
    assert f"callback: hosted ({SSH_WHY})" in for_people


def test_doctor_says_when_oauth_bridge_callback_overrides_the_rule(
    cli_env: dict[str, str],
) -> None:
    env = {
        **cli_env,
        **NOWHERE,
        "SSH_CONNECTION": "10.0.0.2 50000 10.0.0.1 22",
        "OAUTH_BRIDGE_CALLBACK": "loopback",
    }

    report = json.loads(cli(env, "doctor", "--json", "--no-start").stdout)

    assert (report["callback"]["decided"], report["callback"]["set_by"]) == (
        "loopback",
        "OAUTH_BRIDGE_CALLBACK",
    )
    assert "set by OAUTH_BRIDGE_CALLBACK" in by_name(report)["callback"]["detail"]
    assert SSH_WHY in by_name(report)["callback"]["detail"]


def test_a_bad_oauth_bridge_callback_fails_its_check(cli_env: dict[str, str]) -> None:
    env = {**cli_env, **NOWHERE, "OAUTH_BRIDGE_CALLBACK": "remote"}

    result = cli(env, "doctor", "--json", "--no-start")

    check = by_name(json.loads(result.stdout))["callback"]
    assert (result.returncode, check["ok"]) == (1, False)
    assert "OAUTH_BRIDGE_CALLBACK" in check["detail"]


def advice_for(environ: dict[str, str], files: dict[str, str] | None = None) -> str:
    from bridge.client.doctor import environment

    verdict = decide(environ, platform="linux", files=Files(files or {}))
    return " ".join(check.fix for check in environment(8765, verdict))


def test_wsl_codespaces_and_dev_containers_get_their_own_advice() -> None:
    wsl = advice_for({"WSL_DISTRO_NAME": "Debian"})
    codespace = advice_for({"CODESPACES": "true"})
    container = advice_for({}, {"/.dockerenv": ""})
    vscode_container = advice_for(
        {
            "BROWSER": "/vscode/helpers/browser.sh",
            "REMOTE_CONTAINERS": "true",
            "TERM_PROGRAM": "vscode",
        },
        {"/.dockerenv": ""},
    )

    assert "localhostForwarding" in wsl
    assert "gh codespace ports forward" in codespace
    assert "forwardPorts" in container
    assert "forwardPorts" in vscode_container
    assert all(
        "oauth-bridge complete" in advice
        for advice in (wsl, codespace, container, vscode_container)
    )
    assert advice_for({"DISPLAY": ":0"}) == ""


# -- Agent Auth off, a control plane down or hung: advice that fits, in bounded time ----


async def test_agent_auth_not_enabled_gets_the_admins_advice_not_the_credentials(
    cli_env: dict[str, str], control_plane: ControlPlaneDouble
) -> None:
    control_plane.agent_auth_enabled = False

    code, report = await doctor(cli_env)

    check = by_name(report)["control plane"]
    assert (code, check["ok"]) == (1, False)
    assert "Agent Auth is not enabled" in check["detail"]
    assert "admin" in check["fix"]
    assert "oauth-bridge expect --auth-url -" in check["fix"]
    assert "credentials" not in check["fix"]


@pytest.fixture
async def silent_control_plane() -> AsyncIterator[str]:
    """A real HTTP server that takes every request and never answers it: a hung control plane."""
    gone = asyncio.Event()

    async def never(request: web.Request) -> web.Response:
        await gone.wait()
        return web.Response(status=503)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", never)
    runner = web.AppRunner(app, shutdown_timeout=0.1, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    gone.set()
    await runner.cleanup()


# Everything doctor checks but --browser: under this in all, a daemon start included.
DOCTOR_SECONDS = 5.0


async def timed_doctor(env: dict[str, str], *args: str) -> tuple[float, int, dict[str, Any]]:
    began = time.monotonic()
    code, report = await doctor(env, *args)
    return time.monotonic() - began, code, report


async def test_a_hung_control_plane_is_named_so_within_5_seconds(
    cli_env: dict[str, str], silent_control_plane: str
) -> None:
    env = {**cli_env, "OAUTH_BRIDGE_CONTROL_PLANE_URL": silent_control_plane}

    took, code, report = await timed_doctor(env)  # it starts the daemon too

    check = by_name(report)["control plane"]
    assert (code, check["ok"]) == (1, False)
    assert "is hung" in check["detail"], check
    assert silent_control_plane in check["detail"]
    assert took < DOCTOR_SECONDS, f"doctor took {took:.1f}s"


async def test_a_control_plane_that_is_down_is_named_so_within_5_seconds(
    cli_env: dict[str, str],
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        env = {
            **cli_env,
            "OAUTH_BRIDGE_CONTROL_PLANE_URL": f"http://127.0.0.1:{closed.getsockname()[1]}",
        }

        took, code, report = await timed_doctor(env)

    check = by_name(report)["control plane"]
    assert (code, check["ok"]) == (1, False)
    assert "cannot be reached" in check["detail"]
    assert "refused" in check["detail"]
    assert took < DOCTOR_SECONDS, f"doctor took {took:.1f}s"
