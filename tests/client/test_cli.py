"""The CLI as a real subprocess against a real daemon: every exit code from its situation."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from bridge.client.commands import exited
from bridge.client.transport import ControlClient
from bridge.paths import Paths, read_daemon_json
from tests.client.conftest import serve_pids
from tests.conftest import REPO, wait_for
from tests.control_plane_double import ControlPlaneDouble


def cli(
    env: dict[str, str], *args: str, timeout: float = 30, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a tool would; ``stdin`` is what it reads for a '-' argument."""
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        env=env,
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# Runs the CLI as `python -m bridge` does, with Ctrl-C's default meaning restored: a
# test runner started in the background (as CI may be) hands its children SIGINT
# ignored, and Python then never raises KeyboardInterrupt.
AS_FROM_A_TERMINAL = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('bridge', run_name='__main__', alter_sys=True)"
)


def spawn(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", AS_FROM_A_TERMINAL, *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def spawn_on_terminal(env: dict[str, str], terminal: int, *args: str) -> subprocess.Popen[bytes]:
    """Start the CLI with stderr on a pseudo-terminal, as a user's shell would."""
    return subprocess.Popen(
        [sys.executable, "-c", AS_FROM_A_TERMINAL, *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=terminal,
    )


def logins(paths: Paths) -> list[dict[str, Any]]:
    if not paths.control_socket.exists():
        return []
    answer = ControlClient(paths.control_socket).request("GET", "/v1/logins")
    result: list[dict[str, Any]] = answer.body["logins"]
    return result


async def registered(paths: Paths, n: int = 1) -> list[dict[str, Any]]:
    await asyncio.to_thread(wait_for, lambda: len(logins(paths)) >= n, what="a registration")
    return logins(paths)


async def browser_hit(paths: Paths, query: str, provider: str = "github") -> int:
    info = read_daemon_json(paths.daemon_json)
    assert info is not None
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{info['url']}/callback/{provider}?{query}") as response,
    ):
        return response.status


async def finish(proc: subprocess.Popen[str], seconds: float = 30) -> tuple[int, str, str]:
    out, err = await asyncio.to_thread(proc.communicate, None, seconds)
    return proc.returncode, out, err


async def test_expect_registers_and_prints_the_login_id(
    cli_env: dict[str, str], paths: Paths
) -> None:
    result = await asyncio.to_thread(
        cli, cli_env, "expect", "--provider", "github", "--state", "s1"
    )

    assert result.returncode == 0, result.stderr
    assert [result.stdout.strip()] == [login["id"] for login in logins(paths)]
    assert "Expecting the github redirect" in result.stderr


@pytest.mark.parametrize(
    ("query", "answer", "code", "status"),
    [
        ("code=c&state=s", None, 0, "succeeded"),
        ("code=c&state=s", 500, 10, "failed"),
        ("error=access_denied&state=s", None, 11, "denied"),
    ],
)
async def test_expect_wait_exits_with_the_outcome(
    cli_env: dict[str, str],
    paths: Paths,
    control_plane: ControlPlaneDouble,
    query: str,
    answer: int | None,
    code: int,
    status: str,
) -> None:
    if answer:
        control_plane.answer(answer, {"detail": "boom"})
    proc = spawn(cli_env, "expect", "--provider", "github", "--state", "s", "--wait", "--json")
    await registered(paths)

    assert await browser_hit(paths, query) == 200
    returncode, out, err = await finish(proc)

    assert code == returncode, err
    login = json.loads(out)  # stdout is exactly one JSON document
    assert status == login["status"]


async def test_expect_wait_exits_12_when_the_login_expires(
    cli_env: dict[str, str], paths: Paths
) -> None:
    result = await asyncio.to_thread(
        cli,
        cli_env,
        "expect",
        "--provider",
        "github",
        "--state",
        "s",
        "--ttl",
        "1",
        "--wait",
        "--json",
    )

    assert result.returncode == 12
    assert json.loads(result.stdout)["status"] == "expired"


async def test_expect_wait_exits_12_when_the_timeout_runs_out(
    cli_env: dict[str, str], paths: Paths
) -> None:
    result = await asyncio.to_thread(
        cli, cli_env, "expect", "--provider", "github", "--state", "s", "--wait", "--timeout", "0.5"
    )

    assert result.returncode == 12
    assert "Gave up waiting after 0.5s" in result.stderr
    assert logins(paths)[0]["status"] == "pending"


async def test_sigint_during_wait_cancels_the_login_and_exits_13(
    cli_env: dict[str, str], paths: Paths
) -> None:
    proc = spawn(cli_env, "expect", "--provider", "github", "--state", "s", "--wait")
    await registered(paths)

    proc.send_signal(signal.SIGINT)
    returncode, _, err = await finish(proc)

    assert returncode == 13, err
    assert logins(paths)[0]["status"] == "cancelled"


async def test_no_daemon_and_no_start_exits_3(cli_env: dict[str, str]) -> None:
    result = await asyncio.to_thread(
        cli, cli_env, "expect", "--provider", "github", "--state", "s", "--no-start"
    )

    assert result.returncode == 3
    assert "no oauth-bridge daemon is running" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["expect", "--state", "s"],
        ["expect", "--provider", "github"],
        ["expect", "--provider", "github", "--state", "s", "--auth-url", "http://x/?state=s"],
        ["expect", "--provider", "github", "--state", "s", "--open"],
        ["expect", "--provider", "github", "--state", "s", "--timeout", "5"],
        ["nonsense"],
    ],
)
def test_bad_usage_exits_2(cli_env: dict[str, str], args: list[str]) -> None:
    assert cli(cli_env, *args).returncode == 2


async def test_an_auth_url_pointing_elsewhere_is_refused_showing_expected_and_found(
    cli_env: dict[str, str], paths: Paths
) -> None:
    auth_url = "https://github.com/login/oauth/authorize?" + urlencode(
        {"state": "s", "redirect_uri": "http://127.0.0.1:9999/oauth/callback"}
    )

    result = await asyncio.to_thread(
        cli, cli_env, "expect", "--provider", "github", "--auth-url", auth_url
    )

    assert result.returncode == 2
    assert "expected: http://127.0.0.1:" in result.stderr
    assert "found:    http://127.0.0.1:9999/oauth/callback" in result.stderr
    assert logins(paths) == []


async def test_an_auth_url_without_state_is_refused(cli_env: dict[str, str]) -> None:
    result = await asyncio.to_thread(
        cli,
        cli_env,
        "expect",
        "--provider",
        "github",
        "--auth-url",
        "https://github.com/login/oauth/authorize?client_id=x",
    )

    assert result.returncode == 2
    assert "has no state parameter" in result.stderr


async def test_an_auth_url_for_this_daemon_is_taken_and_opened_or_printed(
    cli_env: dict[str, str], paths: Paths
) -> None:
    first = await asyncio.to_thread(cli, cli_env, "expect", "--provider", "x", "--state", "x")
    assert first.returncode == 0
    info = read_daemon_json(paths.daemon_json)
    assert info is not None
    for host in ("127.0.0.1", "localhost"):
        port = str(info["url"]).rsplit(":", 1)[1]
        auth_url = "https://github.com/login/oauth/authorize?" + urlencode(
            {"state": f"st-{host}", "redirect_uri": f"http://{host}:{port}/callback/github"}
        )

        result = await asyncio.to_thread(
            cli, cli_env, "expect", "--provider", "github", "--auth-url", auth_url, "--open"
        )

        assert result.returncode == 0, result.stderr
        assert auth_url in result.stderr  # no display here: it prints the URL...
        assert "oauth-bridge complete" in result.stderr  # ...and the paste fallback


async def test_two_concurrent_expects_start_exactly_one_daemon(
    cli_env: dict[str, str], paths: Paths
) -> None:
    procs = [spawn(cli_env, "expect", "--provider", "github", "--state", f"c{i}") for i in range(2)]

    results = [await finish(p) for p in procs]

    assert [r[0] for r in results] == [0, 0], results
    assert len(logins(paths)) == 2
    assert len(serve_pids(paths)) == 1


async def test_complete_with_a_pasted_url_finishes_the_login(
    cli_env: dict[str, str], paths: Paths, control_plane: ControlPlaneDouble
) -> None:
    waiter = spawn(cli_env, "expect", "--provider", "github", "--state", "p", "--wait")
    await registered(paths)
    info = read_daemon_json(paths.daemon_json)
    assert info is not None

    pasted = await asyncio.to_thread(
        cli, cli_env, "complete", f"{info['url']}/callback/github?code=pasted&state=p"
    )

    assert pasted.returncode == 0, pasted.stderr
    assert ((await finish(waiter))[0], logins(paths)[0]["status"]) == (0, "succeeded")
    assert [c.body for c in control_plane.calls] == [{"code": "pasted", "state": "p"}]


async def test_complete_with_a_foreign_url_exits_2(cli_env: dict[str, str]) -> None:
    await asyncio.to_thread(cli, cli_env, "expect", "--provider", "github", "--state", "q")

    result = await asyncio.to_thread(
        cli, cli_env, "complete", "http://example.com/callback/github?code=c&state=q"
    )

    assert result.returncode == 2
    assert "not a callback address of this oauth-bridge" in result.stderr


async def test_cancel_cancels_a_pending_login(cli_env: dict[str, str], paths: Paths) -> None:
    login_id = (
        await asyncio.to_thread(cli, cli_env, "expect", "--provider", "github", "--state", "c")
    ).stdout.strip()

    result = await asyncio.to_thread(cli, cli_env, "cancel", login_id)

    assert result.returncode == 0
    assert logins(paths)[0]["status"] == "cancelled"
    assert (await asyncio.to_thread(cli, cli_env, "cancel", login_id)).returncode == 10
    assert (await asyncio.to_thread(cli, cli_env, "cancel", "no-such-id")).returncode == 2


async def test_status_json_parses_and_holds_no_secret(
    cli_env: dict[str, str], paths: Paths
) -> None:
    await asyncio.to_thread(
        cli, cli_env, "expect", "--provider", "github", "--state", "status-secret-state"
    )

    result = await asyncio.to_thread(cli, cli_env, "status", "--json")

    assert result.returncode == 0
    status = json.loads(result.stdout)
    assert (status["running"], status["pending"]) == (True, 1)
    assert {"pid", "url", "version", "uptime_seconds", "recent_logins"} <= set(status)
    for secret in (
        "status-secret-state",
        cli_env["LANGSMITH_API_KEY"],
        cli_env["OAUTH_BRIDGE_BEARER_TOKEN"],
    ):
        assert secret not in result.stdout


def test_status_without_a_daemon_says_so_and_exits_3(cli_env: dict[str, str]) -> None:
    result = cli(cli_env, "status")

    assert result.returncode == 3
    assert "not running" in result.stderr


def test_demo_exits_0_and_shows_the_forward_and_the_success(cli_env: dict[str, str]) -> None:
    result = cli(cli_env, "demo", timeout=60)

    assert result.returncode == 0, result.stderr
    assert "forwarded {code, state} to the control plane" in result.stdout
    assert "✓ Succeeded" in result.stdout
    assert "How long each hop took" in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        "serve",
        "expect",
        "login",
        "status",
        "stop",
        "cancel",
        "complete",
        "providers",
        "demo",
        "install-service",
    ],
)
def test_every_command_has_help_with_an_example(cli_env: dict[str, str], command: str) -> None:
    result = cli(cli_env, command, "--help")

    assert result.returncode == 0
    assert "example" in result.stdout


def test_the_cli_does_not_import_the_server_stack(cli_env: dict[str, str]) -> None:
    code = (
        "import sys; from bridge.cli import main\n"
        "main(['status'])\n"
        "heavy = [m for m in ('aiohttp', 'pydantic', 'yarl', 'multidict') if m in sys.modules]\n"
        "print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=cli_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.stdout.strip() == "[]"


async def test_a_daemon_that_fails_to_start_is_reported_with_its_log_tail(
    cli_env: dict[str, str], paths: Paths
) -> None:
    paths.config_file.write_text("port = 70000\n", encoding="utf-8")
    del cli_env["OAUTH_BRIDGE_PORT"]

    result = await asyncio.to_thread(cli, cli_env, "expect", "--provider", "github", "--state", "s")

    assert result.returncode == 2  # a bad configuration, as serve itself says
    assert "the daemon did not start (exit 2)" in result.stderr
    assert "key 'port': Input should be less than or equal to 65535" in result.stderr
    assert str(paths.state_dir / "daemon.log") in result.stderr


async def test_on_a_terminal_wait_shows_a_live_status_line(
    cli_env: dict[str, str], paths: Paths
) -> None:
    primary, secondary = os.openpty()
    proc = spawn_on_terminal(
        cli_env, secondary, "expect", "--provider", "github", "--state", "t", "--wait"
    )
    os.close(secondary)
    seen = b""

    def read_until_status_line() -> None:
        nonlocal seen
        while b"left" not in seen:
            seen += os.read(primary, 4096)

    await asyncio.wait_for(asyncio.to_thread(read_until_status_line), 20)
    proc.send_signal(signal.SIGINT)
    await asyncio.to_thread(proc.wait, 20)
    os.close(primary)

    line = seen.decode(errors="replace")
    assert "github: waiting for you to finish in the browser" in line
    assert "9:5" in line  # the time left of a 600 s login, ticking
    assert "Ctrl-C cancels" in line
    assert proc.returncode == 13


async def test_status_for_people_shows_pid_url_pending_and_recent_logins(
    cli_env: dict[str, str], paths: Paths
) -> None:
    login_id = (
        await asyncio.to_thread(cli, cli_env, "expect", "--provider", "github", "--state", "h")
    ).stdout.strip()
    info = read_daemon_json(paths.daemon_json)
    assert info is not None

    result = await asyncio.to_thread(cli, cli_env, "status")

    assert result.returncode == 0
    assert f"is running (pid {info['pid']})" in result.stdout
    assert f"{info['url']}/callback/<provider>" in result.stdout
    assert "pending logins: 1" in result.stdout
    assert f"{login_id}  github" in result.stdout


# A stand-in for the user's browser, run by the webbrowser module through $BROWSER: it
# loads the page, clicks "Authorize", and follows the redirects as a browser would.
FAKE_BROWSER = r"""
import re, sys, urllib.parse, urllib.request
with urllib.request.urlopen(sys.argv[1]) as opened:  # the trampoline sends it on
    url, page = opened.geturl(), opened.read().decode()
approve = re.search(r"id='approve' href='([^']+)'", page).group(1).replace("&amp;", "&")
with urllib.request.urlopen(urllib.parse.urljoin(url, approve)) as final:
    open(sys.argv[2], "w").write(final.geturl() + "\n" + final.read().decode())
"""


def test_demo_browser_opens_the_users_browser_and_waits_for_it(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    script = tmp_path / "browser.py"
    script.write_text(FAKE_BROWSER, encoding="utf-8")
    landed = tmp_path / "landed.txt"
    cli_env.update(DISPLAY=":99", BROWSER=f"{sys.executable} {script} %s {landed}")

    result = cli(cli_env, "demo", "--browser", timeout=60)

    assert result.returncode == 0, result.stderr
    assert "Opened the browser" in result.stderr
    assert "✓ Succeeded" in result.stdout
    final_url, page = landed.read_text().split("\n", 1)
    assert "/result/" in final_url
    assert "code=" not in final_url
    assert 'content="succeeded"' in page


async def test_wait_stays_for_a_forward_that_runs_past_the_ttl(
    cli_env: dict[str, str], paths: Paths, control_plane: ControlPlaneDouble
) -> None:
    # The redirect comes within the 1 s TTL; the control plane takes 4 s, past the CLI's
    # own deadline of TTL + 2 s. Giving up would report "expired" for a login that succeeds.
    control_plane.script.delay = 4.0
    proc = spawn(
        cli_env, "expect", "--provider", "github", "--state", "s", "--ttl", "1", "--wait", "--json"
    )
    await registered(paths)

    assert await browser_hit(paths, "code=c&state=s") == 200
    returncode, out, err = await finish(proc)

    assert returncode == 0, err
    assert json.loads(out)["status"] == "succeeded"


async def test_expect_waits_for_a_daemon_that_holds_the_lock_to_let_go(
    cli_env: dict[str, str], paths: Paths
) -> None:
    import fcntl

    paths.runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with paths.lock_file.open("a+") as stopping_daemon:  # a daemon still shutting down
        fcntl.flock(stopping_daemon, fcntl.LOCK_EX)
        proc = spawn(cli_env, "expect", "--provider", "github", "--state", "s")
        await asyncio.to_thread(
            wait_for,
            lambda: (
                "already running" in paths.daemon_log.read_text()
                if paths.daemon_log.exists()
                else False
            ),
            what="a start refused by the lock",
        )
    returncode, out, err = await finish(proc)

    assert returncode == 0, err
    assert [login["id"] for login in logins(paths)] == [out.strip()]


def test_complete_refuses_a_runtime_dir_open_to_others(
    cli_env: dict[str, str], paths: Paths
) -> None:
    paths.runtime_dir.mkdir(parents=True)
    paths.control_socket.touch()
    os.chmod(paths.runtime_dir, 0o755)  # noqa: S103  # the mistake under test

    result = cli(cli_env, "complete", "http://127.0.0.1:8765/callback/github?code=c&state=s")

    assert result.returncode == 2
    assert "open to other users" in result.stderr


async def test_a_symlink_in_place_of_the_daemon_log_is_never_written_through(
    cli_env: dict[str, str], paths: Paths, tmp_path: Path
) -> None:
    target = tmp_path / "not-yours.txt"
    target.write_text("precious\n")
    paths.state_dir.mkdir(mode=0o700, parents=True)
    paths.daemon_log.symlink_to(target)

    result = await asyncio.to_thread(
        cli, cli_env, "expect", "--provider", "github", "--state", "s-link"
    )

    assert result.returncode == 3
    assert "it is a symlink" in result.stderr
    assert target.read_text() == "precious\n"


async def test_the_daemon_log_is_rotated_past_a_mebibyte(
    cli_env: dict[str, str], paths: Paths
) -> None:
    paths.state_dir.mkdir(mode=0o700, parents=True)
    paths.daemon_log.write_bytes(b"old line\n" * 200_000)  # 1.8 MB from earlier runs

    result = await asyncio.to_thread(cli, cli_env, "expect", "--provider", "github", "--state", "r")

    assert result.returncode == 0, result.stderr
    assert paths.daemon_log.with_name("daemon.log.1").stat().st_size == 1_800_000
    assert paths.daemon_log.stat().st_size < 100_000


async def test_stop_force_stops_an_auto_started_daemon_and_the_login_survives(
    cli_env: dict[str, str], paths: Paths
) -> None:
    await asyncio.to_thread(cli, cli_env, "expect", "--provider", "github", "--state", "s-stop")
    pid = serve_pids(paths)[0]

    stopped = await asyncio.to_thread(cli, cli_env, "stop", "--force")
    again = await asyncio.to_thread(cli, cli_env, "stop")

    assert stopped.returncode == 0, stopped.stderr
    assert "another user of this computer could take the port" in stopped.stderr
    assert f"Stopped oauth-bridge (pid {pid})" in stopped.stderr
    assert exited(pid)
    assert not paths.daemon_json.exists()
    assert again.returncode == 3
    # The next command starts a new daemon, which still knows the pending login.
    assert logins_after_restart(cli_env, paths) == ["pending"]


async def test_stop_with_a_pending_login_waits_for_it_to_end(
    cli_env: dict[str, str], paths: Paths
) -> None:
    await asyncio.to_thread(cli, cli_env, "expect", "--provider", "github", "--state", "s-wait")
    pid = serve_pids(paths)[0]
    (pending,) = logins(paths)
    stopping = spawn(cli_env, "stop")
    assert stopping.stderr is not None
    said = await asyncio.to_thread(stopping.stderr.readline)
    still_running = not exited(pid)

    cancelled = await asyncio.to_thread(cli, cli_env, "cancel", pending["id"])
    returncode, _, err = await finish(stopping)

    assert "1 login(s) pending: waiting for them to end" in said
    assert still_running
    assert cancelled.returncode == 0
    assert returncode == 0, err
    assert exited(pid)


def logins_after_restart(cli_env: dict[str, str], paths: Paths) -> list[str]:
    cli(cli_env, "expect", "--provider", "github", "--state", "s-other")
    return [login["status"] for login in logins(paths) if login["id"]][:1]


async def test_status_says_where_the_credentials_and_the_log_are(
    cli_env: dict[str, str], paths: Paths
) -> None:
    await asyncio.to_thread(cli, cli_env, "expect", "--provider", "github", "--state", "s-st")

    result = await asyncio.to_thread(cli, cli_env, "status")

    assert (
        "credentials:    API key from the environment, bearer token from the environment"
        in result.stdout
    )
    assert f"log:            {paths.daemon_log}" in result.stdout


def test_without_xdg_runtime_dir_one_plain_sentence_not_a_warning(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        k: v for k, v in cli_env.items() if k not in ("XDG_RUNTIME_DIR", "OAUTH_BRIDGE_RUNTIME_DIR")
    }

    result = cli(env, "status")

    assert result.returncode == 3
    assert "XDG_RUNTIME_DIR is not set, so the control socket is in" in result.stderr
    assert "Warning" not in result.stderr
    assert "site-packages" not in result.stderr


async def test_a_tool_with_another_control_plane_than_the_running_daemon_is_warned(
    cli_env: dict[str, str],
) -> None:
    same = await asyncio.to_thread(cli, cli_env, "expect", "--provider", "github", "--state", "a")
    other_key = {**cli_env, "LANGSMITH_API_KEY": "another-tools-key"}
    other_plane = {**cli_env, "OAUTH_BRIDGE_CONTROL_PLANE_URL": "https://eu.api.host.langchain.com"}

    keyed = await asyncio.to_thread(
        cli, other_key, "expect", "--provider", "github", "--state", "b"
    )
    planed = await asyncio.to_thread(
        cli, other_plane, "expect", "--provider", "github", "--state", "c"
    )

    assert "uses another" not in same.stderr
    # Another key is no matter now: it goes with this tool's logins (test_credentials.py).
    assert "uses another" not in keyed.stderr
    assert "another-tools-key" not in keyed.stderr
    assert "uses another control plane" in planed.stderr
    assert "'oauth-bridge stop'" in planed.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--ttl", "5000"], "--ttl must be between 1 and 3600 seconds, not 5000"),
        (["--wait", "--timeout", "-1"], "--timeout must be 0 or more seconds, not -1"),
    ],
)
def test_a_bad_ttl_or_timeout_is_refused_in_the_clis_own_words(
    cli_env: dict[str, str], args: list[str], words: str
) -> None:
    result = cli(cli_env, "expect", "--provider", "github", "--state", "s", *args)

    assert result.returncode == 2
    assert words in result.stderr
    assert "pydantic" not in result.stderr


def test_login_ids_never_start_with_a_dash() -> None:
    from bridge.daemon.store import new_login_id

    ids = [new_login_id() for _ in range(5000)]  # without the rule, ~78 would

    assert [i for i in ids if i.startswith("-")] == []


def test_the_verbose_flag_works_after_the_command_too(cli_env: dict[str, str]) -> None:
    result = cli(cli_env, "cancel", "nope", "--verbose")

    assert result.returncode == 1  # the traceback of DaemonUnavailable, as --verbose asks
    assert "Traceback" in result.stderr


def test_a_bare_oauth_bridge_prints_the_help(cli_env: dict[str, str]) -> None:
    result = cli(cli_env)

    assert result.returncode == 2
    assert "usage: oauth-bridge" in result.stdout
    assert "login" in result.stdout


async def test_an_auto_started_daemon_exits_when_idle_unless_told_otherwise(
    cli_env: dict[str, str], paths: Paths
) -> None:
    await asyncio.to_thread(cli, cli_env, "expect", "--provider", "github", "--state", "i")
    (pid,) = serve_pids(paths)
    cmdline = await asyncio.to_thread(Path(f"/proc/{pid}/cmdline").read_bytes)

    assert b"\0--idle-exit\x00600" in cmdline

    from bridge.client.autostart import idle_exit_argument

    assert idle_exit_argument({"OAUTH_BRIDGE_IDLE_EXIT_SECONDS": "60"}) == []


async def test_a_redirect_uri_for_another_provider_is_named_as_such_not_as_a_port(
    cli_env: dict[str, str], paths: Paths
) -> None:
    await asyncio.to_thread(cli, cli_env, "expect", "--provider", "github", "--state", "first")
    info = read_daemon_json(paths.daemon_json)
    assert info is not None
    auth_url = "https://accounts.invalid/authorize?" + urlencode(
        {"state": "s-p", "redirect_uri": f"{info['url']}/callback/google"}
    )

    result = await asyncio.to_thread(
        cli, cli_env, "expect", "--provider", "github", "--auth-url", auth_url
    )

    assert result.returncode == 2
    assert "The provider id differs" in result.stderr
    assert "--port" not in result.stderr
