"""A state or a code never needs to be on a command line, and a killed wait cancels its login."""

from __future__ import annotations

import asyncio
import signal
import subprocess

import pytest

from bridge.paths import Paths
from tests.client.test_cli import cli, finish, logins, registered, spawn
from tests.control_plane_double import ControlPlaneDouble

WARNING = "readable by every local user"


def cli_with_stdin(env: dict[str, str], stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(env, *args, stdin=stdin)


async def test_expect_reads_the_state_from_standard_input(
    cli_env: dict[str, str], paths: Paths
) -> None:
    result = await asyncio.to_thread(
        cli_with_stdin, cli_env, "st-from-stdin\n", "expect", "--provider", "github", "--state", "-"
    )

    assert result.returncode == 0, result.stderr
    assert WARNING not in result.stderr
    assert [login["id"] for login in logins(paths)] == [result.stdout.strip()]
    # The registered state is the one from stdin: a second registration of it collides.
    again = await asyncio.to_thread(
        cli_with_stdin, cli_env, "st-from-stdin\n", "expect", "--provider", "github", "--state", "-"
    )
    assert again.returncode == 2
    assert "already registered" in again.stderr


async def test_expect_reads_the_authorization_url_from_standard_input(
    cli_env: dict[str, str], paths: Paths
) -> None:
    url = "https://provider.invalid/authorize?state=st-url-stdin"

    result = await asyncio.to_thread(
        cli_with_stdin, cli_env, url + "\n", "expect", "--provider", "github", "--auth-url", "-"
    )

    assert result.returncode == 0, result.stderr
    assert WARNING not in result.stderr


async def test_a_state_on_the_command_line_draws_a_warning(cli_env: dict[str, str]) -> None:
    result = await asyncio.to_thread(
        cli_with_stdin, cli_env, "", "expect", "--provider", "github", "--state", "st-argv"
    )

    assert result.returncode == 0, result.stderr
    assert WARNING in result.stderr
    assert "--state -" in result.stderr


async def test_an_empty_standard_input_is_a_usage_error(cli_env: dict[str, str]) -> None:
    result = await asyncio.to_thread(
        cli_with_stdin, cli_env, "", "expect", "--provider", "github", "--state", "-"
    )

    assert result.returncode == 2
    assert "standard input" in result.stderr


async def test_complete_reads_the_address_from_standard_input(
    cli_env: dict[str, str], paths: Paths, control_plane: ControlPlaneDouble
) -> None:
    await asyncio.to_thread(
        cli_with_stdin, cli_env, "st-paste\n", "expect", "--provider", "github", "--state", "-"
    )
    port = int(str(logins(paths)[0]["redirect_uri"]).split(":")[2].split("/")[0])
    address = f"http://127.0.0.1:{port}/callback/github?code=c-paste&state=st-paste"

    result = await asyncio.to_thread(cli_with_stdin, cli_env, address + "\n", "complete")

    assert result.returncode == 0, result.stderr
    assert WARNING not in result.stderr
    assert [c.body for c in control_plane.calls] == [{"code": "c-paste", "state": "st-paste"}]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
async def test_sigterm_and_sighup_during_wait_cancel_the_login_and_exit_13(
    cli_env: dict[str, str], paths: Paths, signum: signal.Signals
) -> None:
    proc = spawn(cli_env, "expect", "--provider", "github", "--state", "s", "--wait")
    await registered(paths)

    proc.send_signal(signum)
    returncode, _, err = await finish(proc)

    assert returncode == 13, err
    assert logins(paths)[0]["status"] == "cancelled"


async def test_sigterm_while_the_code_is_being_forwarded_reports_the_real_outcome(
    cli_env: dict[str, str], paths: Paths, control_plane: ControlPlaneDouble
) -> None:
    import aiohttp

    from bridge.paths import read_daemon_json

    proc = spawn(cli_env, "expect", "--provider", "github", "--state", "s-fwd", "--wait")
    await registered(paths)
    info = read_daemon_json(paths.daemon_json)
    assert info is not None
    control_plane.script.hang = True
    async with aiohttp.ClientSession() as browser:
        hit = asyncio.create_task(browser.get(f"{info['url']}/callback/github?code=c&state=s-fwd"))
        await asyncio.wait_for(control_plane.called.wait(), 10)  # the forward is out

        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(wait_for_text, proc, "already being finished")
        control_plane.release.set()
        returncode, _, err = await finish(proc)
        (await hit).release()

    assert returncode == 0, err
    assert "Connected to github" in err
    assert "Traceback" not in err


def wait_for_text(proc: subprocess.Popen[str], text: str) -> None:
    """Read the CLI's stderr until ``text`` appears (the deadline is the read's own)."""
    assert proc.stderr is not None
    seen = ""
    while text not in seen:
        line = proc.stderr.readline()
        assert line, f"the CLI ended without saying {text!r}: {seen}"
        seen += line
