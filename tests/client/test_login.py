"""The whole login from a tool: ``oauth-bridge login`` and the Python API, against real parts.

The daemon is a real process, the control plane the Auth Service double, and the
browser a small program the CLI opens through ``$BROWSER``: it plays the provider's
consent by going to the URL's ``redirect_uri`` with a code and the state.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest

from bridge.client import AsyncBridge, Bridge, ControlPlaneRefused
from bridge.paths import Paths
from tests.client.test_cli import cli, spawn
from tests.conftest import DaemonProcess, wait_ready
from tests.control_plane_double import ControlPlaneDouble

StartDaemon = Callable[..., DaemonProcess]

# The user's browser: it opens the address it is handed (the trampoline, or a private
# redirect file), lands at the provider, and consent there means a redirect to
# redirect_uri.
CONSENTING_BROWSER = r"""
import html, re, sys, urllib.error, urllib.parse, urllib.request
url, landed, answer = sys.argv[1], sys.argv[2], sys.argv[3]
if url.startswith("file://"):
    page = open(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).read()
    url = html.unescape(re.search(r'content="0;url=([^"]+)"', page).group(1))
if "/go/" in url:
    class Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    try:
        urllib.request.build_opener(Stay).open(url)
        raise SystemExit("the trampoline did not redirect")
    except urllib.error.HTTPError as jump:
        assert jump.code == 302, jump.code
        url = jump.headers["Location"]
query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
params = {"state": query["state"][0]}
params.update(urllib.parse.parse_qsl(answer))
target = query["redirect_uri"][0] + "?" + urllib.parse.urlencode(params)
with urllib.request.urlopen(target) as final:
    open(landed, "w").write(final.geturl() + "\n" + final.read().decode())
"""


@pytest.fixture
async def daemon(daemon_process: StartDaemon, control_plane: ControlPlaneDouble) -> DaemonProcess:
    """A running daemon whose callback the double's github provider allows."""
    proc = daemon_process()
    info = await asyncio.to_thread(wait_ready, proc)
    control_plane.allow("github", f"{info['url']}/callback/github")
    return proc


def browser_env(
    env: dict[str, str], tmp_path: Path, answer: str = "code=c-1"
) -> tuple[dict[str, str], Path]:
    script = tmp_path / "browser.py"
    script.write_text(CONSENTING_BROWSER, encoding="utf-8")
    landed = tmp_path / "landed.txt"
    env = {**env, "DISPLAY": ":99", "BROWSER": f"{sys.executable} {script} %s {landed} {answer}"}
    return env, landed


async def test_login_connects_in_one_command_and_prints_the_token_only_in_json(
    cli_env: dict[str, str],
    daemon: DaemonProcess,
    control_plane: ControlPlaneDouble,
    paths: Paths,
    tmp_path: Path,
) -> None:
    env, landed = browser_env(cli_env, tmp_path)

    result = await asyncio.to_thread(
        cli, env, "login", "--provider", "github", "--scope", "repo", "--json"
    )

    assert result.returncode == 0, result.stderr
    login = json.loads(result.stdout)
    token = control_plane.tokens[("github", None)]
    assert login["status"] == "succeeded"
    assert login["result"]["token"] == token
    assert token not in result.stderr
    assert result.stderr.index("Sign in at:") < result.stderr.index("Opened the browser")
    assert "✓ Connected to github." in result.stderr
    final_url, page = landed.read_text().split("\n", 1)
    assert 'content="succeeded"' in page
    assert "code=" not in final_url
    assert "auth_url" not in login  # the URL is in the 201 answer only


async def test_login_without_json_never_prints_the_token(
    cli_env: dict[str, str],
    daemon: DaemonProcess,
    control_plane: ControlPlaneDouble,
    paths: Paths,
    tmp_path: Path,
) -> None:
    env, _ = browser_env(cli_env, tmp_path)

    result = await asyncio.to_thread(cli, env, "login", "--provider", "github", "--scope", "repo")

    token = control_plane.tokens[("github", None)]
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert token not in result.stderr


async def test_already_connected_exits_0_at_once_and_opens_nothing(
    cli_env: dict[str, str],
    daemon: DaemonProcess,
    control_plane: ControlPlaneDouble,
    paths: Paths,
    tmp_path: Path,
) -> None:
    control_plane.tokens[("github", "u-1")] = "tok-already"
    env, landed = browser_env(cli_env, tmp_path)

    result = await asyncio.to_thread(
        cli, env, "login", "--provider", "github", "--scope", "repo", "--user-id", "u-1", "--json"
    )

    assert result.returncode == 0, result.stderr
    login = json.loads(result.stdout)
    assert (login["result"]["already_connected"], login["result"]["token"]) == (True, "tok-already")
    assert "already connected" in result.stderr
    assert not landed.exists()


async def test_login_ends_right_when_the_control_plane_uses_its_own_page(
    cli_env: dict[str, str],
    daemon_process: StartDaemon,
    control_plane: ControlPlaneDouble,
    paths: Paths,
    tmp_path: Path,
) -> None:
    await asyncio.to_thread(wait_ready, daemon_process())  # the provider does not allow us
    env, landed = browser_env(cli_env, tmp_path)

    result = await asyncio.to_thread(
        cli, env, "login", "--provider", "github", "--scope", "repo", "--json"
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["result"]["token"] == control_plane.tokens[("github", None)]
    assert landed.read_text().startswith(f"{control_plane.url}/host-oauth-callback/github")
    assert control_plane.calls == []


async def test_a_denial_at_the_provider_exits_11_with_its_words(
    cli_env: dict[str, str],
    daemon: DaemonProcess,
    control_plane: ControlPlaneDouble,
    paths: Paths,
    tmp_path: Path,
) -> None:
    answer = "error=access_denied&error_description=Not%20today"
    env, _ = browser_env(cli_env, tmp_path, answer)

    result = await asyncio.to_thread(cli, env, "login", "--provider", "github", "--scope", "repo")

    assert result.returncode == 11
    assert "denied: Not today" in result.stderr


async def test_a_control_plane_that_refuses_to_start_is_exit_10_with_what_to_do(
    cli_env: dict[str, str],
    daemon: DaemonProcess,
    control_plane: ControlPlaneDouble,
    paths: Paths,
    tmp_path: Path,
) -> None:
    control_plane.agent_auth_enabled = False
    env, landed = browser_env(cli_env, tmp_path)

    result = await asyncio.to_thread(cli, env, "login", "--provider", "github", "--scope", "repo")

    assert result.returncode == 10
    assert "Agent Auth must be enabled" in result.stderr
    assert "expect --auth-url -" in result.stderr
    assert not landed.exists()


async def test_login_warns_before_the_browser_when_the_daemon_has_no_credential(
    cli_env: dict[str, str],
    daemon_process: StartDaemon,
    control_plane: ControlPlaneDouble,
    paths: Paths,
) -> None:
    control_plane.api_key = control_plane.workspace_id = control_plane.bearer = None
    proc = daemon_process(LANGSMITH_API_KEY="", OAUTH_BRIDGE_BEARER_TOKEN="")
    await asyncio.to_thread(wait_ready, proc)
    # Neither has one: a tool's own credentials would go with its login.
    env = {**cli_env, "LANGSMITH_API_KEY": "", "OAUTH_BRIDGE_BEARER_TOKEN": ""}

    result = await asyncio.to_thread(
        cli, env, "login", "--provider", "github", "--scope", "repo", "--no-open", "--timeout", "0"
    )

    assert "no LangSmith credential" in result.stderr
    assert result.stderr.index("no LangSmith credential") < result.stderr.index("Sign in")


async def test_a_waiting_login_rides_out_a_restart_of_the_daemon(
    cli_env: dict[str, str],
    daemon: DaemonProcess,
    daemon_process: StartDaemon,
    control_plane: ControlPlaneDouble,
    paths: Paths,
) -> None:
    env = cli_env
    waiting = spawn(env, "login", "--provider", "github", "--scope", "repo", "--no-open", "--json")
    auth = await until(lambda: next(iter(control_plane.auth_requests.values()), None))

    daemon.process.send_signal(signal.SIGTERM)
    await asyncio.to_thread(daemon.process.wait, 15)
    info = await asyncio.to_thread(wait_ready, daemon_process())
    # The browser comes back to the new daemon, which knows the login from its store.
    async with aiohttp.ClientSession() as browser:
        query = urlencode({"code": "c-2", "state": auth.state})
        async with browser.get(f"{info['url']}/callback/github?{query}") as page:
            assert page.status == 200
    out, err = await asyncio.to_thread(waiting.communicate, timeout=30)

    assert waiting.returncode == 0, err
    assert json.loads(out)["result"]["token"] == control_plane.tokens[("github", None)]


async def test_no_token_or_state_reaches_a_log_or_the_state_dir(
    cli_env: dict[str, str],
    daemon: DaemonProcess,
    control_plane: ControlPlaneDouble,
    paths: Paths,
    tmp_path: Path,
) -> None:
    env, _ = browser_env(cli_env, tmp_path)
    env["OAUTH_BRIDGE_LOG_LEVEL"] = "debug"

    result = await asyncio.to_thread(
        cli, env, "login", "--provider", "github", "--scope", "repo", "--json"
    )

    assert result.returncode == 0, result.stderr
    token = control_plane.tokens[("github", None)]
    (auth,) = control_plane.auth_requests.values()
    places = {"daemon's log": daemon.log.read_bytes()}
    places.update({str(f): f.read_bytes() for f in paths.state_dir.rglob("*") if f.is_file()})
    for where, content in places.items():
        assert token.encode() not in content, where
        assert auth.state.encode() not in content, where


async def test_bridge_runs_a_whole_login(
    cli_env: dict[str, str], daemon: DaemonProcess, control_plane: ControlPlaneDouble, paths: Paths
) -> None:
    def tool() -> Any:
        bridge = Bridge(start=False, paths=paths)
        login = bridge.login("github", scopes=["repo"], callback="loopback")
        consent(login.auth_url)
        return login, login.wait(timeout=30)

    started, done = await asyncio.to_thread(tool)

    assert started.status == "pending"
    assert started.auth_url is not None
    assert (done.status, done.token) == ("succeeded", control_plane.tokens[("github", None)])
    assert done.auth_url == started.auth_url  # waiting changes the state, not the URL


async def test_async_bridge_runs_a_whole_login_without_a_thread(
    cli_env: dict[str, str], daemon: DaemonProcess, control_plane: ControlPlaneDouble, paths: Paths
) -> None:
    bridge = AsyncBridge(start=False, paths=paths)
    login = await bridge.login("github", scopes=["repo"], callback="loopback")
    assert login.auth_url is not None
    waiter = asyncio.create_task(login.wait(timeout=30))
    # The wait runs on this loop while the browser, also on this loop, comes back.
    await asyncio.to_thread(consent, login.auth_url)
    done = await waiter

    assert (done.status, done.token) == ("succeeded", control_plane.tokens[("github", None)])


async def test_async_bridge_cancels_and_a_cancelled_wait_leaves_nothing_behind(
    cli_env: dict[str, str], daemon: DaemonProcess, control_plane: ControlPlaneDouble, paths: Paths
) -> None:
    bridge = AsyncBridge(start=False, paths=paths)
    login = await bridge.login("github", scopes=["repo"], callback="loopback")
    waiter = asyncio.create_task(login.wait())
    await asyncio.sleep(0)  # let the long-poll start: a scheduling point, not a wait
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter

    cancelled = await bridge.cancel(login.id)

    assert cancelled.status == "cancelled"


async def test_bridge_raises_control_plane_refused_with_its_facts(
    cli_env: dict[str, str], daemon: DaemonProcess, control_plane: ControlPlaneDouble, paths: Paths
) -> None:
    control_plane.api_key = "another-key"

    with pytest.raises(ControlPlaneRefused) as refused:
        await AsyncBridge(start=False, paths=paths).login(
            "github", scopes=["repo"], callback="loopback"
        )

    assert (refused.value.error, refused.value.control_plane_status) == (
        "control_plane_rejected",
        401,
    )
    assert refused.value.exit_code == 10


async def test_providers_allow_loopback_adds_the_callback_then_does_nothing(
    cli_env: dict[str, str],
    daemon_process: StartDaemon,
    control_plane: ControlPlaneDouble,
    paths: Paths,
) -> None:
    info = await asyncio.to_thread(wait_ready, daemon_process())
    env = cli_env
    ours = f"{info['url']}/callback/github"

    dry = await asyncio.to_thread(cli, env, "providers", "allow-loopback", "github", "--dry-run")
    first = await asyncio.to_thread(cli, env, "providers", "allow-loopback", "github")
    second = await asyncio.to_thread(cli, env, "providers", "allow-loopback", "github", "--json")

    assert (dry.returncode, first.returncode, second.returncode) == (0, 0, 0)
    assert "Would add" in dry.stderr
    assert f"Added {ours}" in first.stderr
    assert "nothing to do" in second.stderr
    assert json.loads(second.stdout)["changed"] is False
    assert "OAuth app itself" in first.stderr
    assert control_plane.providers["github"]["allowed_redirect_uris"] == [ours]
    unknown = await asyncio.to_thread(cli, env, "providers", "allow-loopback", "gitlab")
    assert unknown.returncode == 10


def follow_trampoline(url: str) -> str:
    """Open a one-time /go/ address as a browser does; return where it sends the browser."""
    import urllib.error
    import urllib.request

    class Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    with pytest.raises(urllib.error.HTTPError) as jump:
        urllib.request.build_opener(Stay).open(url)
    jump.value.close()  # the error holds the answer's connection
    assert jump.value.code == 302, jump.value.code
    return str(jump.value.headers["Location"])


def consent(auth_url: str | None) -> str:
    """Play the browser: the provider redirects to redirect_uri with a code and the state.

    A trampoline address (what a tool opens) is followed to the provider first.
    """
    import urllib.request

    assert auth_url is not None
    if "/go/" in auth_url:
        auth_url = follow_trampoline(auth_url)
    query = {k: v[0] for k, v in parse_qs(urlsplit(auth_url).query).items()}
    target = f"{query['redirect_uri']}?{urlencode({'code': 'c-api', 'state': query['state']})}"
    with urllib.request.urlopen(target) as page:  # noqa: S310  # a loopback URL of ours
        assert page.status == 200
        return str(page.read().decode())


async def until(find: Callable[[], Any], seconds: float = 15.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (found := find()) is None:
        assert loop.time() < deadline, "never happened"
        await asyncio.sleep(0.01)
    return found


async def test_the_tool_named_in_the_api_is_named_on_the_page(
    cli_env: dict[str, str], daemon: DaemonProcess, paths: Paths
) -> None:
    def tool() -> str:
        login = Bridge(start=False, paths=paths, client_name="Acme CLI").login(
            "github", ["repo"], callback="loopback"
        )
        return consent(login.auth_url)

    page = await asyncio.to_thread(tool)

    assert "return to Acme CLI" in page


async def test_the_control_planes_words_reach_the_terminal_escaped(
    cli_env: dict[str, str], daemon: DaemonProcess, control_plane: ControlPlaneDouble
) -> None:
    control_plane.authenticate_answers.append((403, {"detail": "\x1b]0;PWNED\x07\x1b[2J no"}))

    result = await asyncio.to_thread(cli, cli_env, "login", "--provider", "github", "--scope", "r")

    assert result.returncode == 10
    assert "\x1b" not in result.stderr
    assert "\\x1b]0;PWNED" in result.stderr


async def test_a_wait_that_has_run_out_still_returns_the_login_as_it_is(
    daemon: DaemonProcess, control_plane: ControlPlaneDouble, paths: Paths
) -> None:
    def tool() -> tuple[str, str]:
        login = Bridge(start=False, paths=paths).login("github", ["repo"], callback="loopback")
        consent(login.auth_url)
        return login.status, login.wait(timeout=0).status

    before, after = await asyncio.to_thread(tool)

    assert (before, after) == ("pending", "succeeded")


async def test_expect_open_shows_the_url_only_where_no_browser_opens(
    cli_env: dict[str, str], daemon: DaemonProcess, tmp_path: Path
) -> None:
    from bridge.paths import read_daemon_json

    info = read_daemon_json(daemon.paths.daemon_json)
    assert info is not None
    url = "https://provider.invalid/authorize?" + urlencode(
        {"state": "st-open", "redirect_uri": f"{info['url']}/callback/github"}
    )
    opened = {**cli_env, "DISPLAY": ":99", "BROWSER": "true"}

    with_browser = await asyncio.to_thread(
        cli, opened, "expect", "--provider", "github", "--auth-url", url, "--open"
    )
    without = await asyncio.to_thread(
        cli,
        cli_env,
        "expect",
        "--provider",
        "github",
        "--auth-url",
        url.replace("st-open", "st-o2"),
        "--open",
    )

    assert with_browser.returncode == 0, with_browser.stderr
    assert "Opened the browser" in with_browser.stderr
    assert "provider.invalid/authorize" not in with_browser.stderr
    assert "provider.invalid/authorize" in without.stderr


async def test_async_bridge_has_the_paste_fallback_and_allow_loopback_too(
    daemon_process: StartDaemon, control_plane: ControlPlaneDouble, paths: Paths
) -> None:
    await asyncio.to_thread(wait_ready, daemon_process())
    bridge = AsyncBridge(start=False, paths=paths)

    allowed = await bridge.allow_loopback("github", dry_run=True)
    login = await bridge.expect("github", state="st-async-paste")
    done = await bridge.complete(f"{bridge.url}/callback/github?code=c&state=st-async-paste")
    cancelled, again = await bridge.cancel_if_pending(login.id)

    assert allowed["changed"] is True
    assert allowed["redirect_uri"] == f"{bridge.url}/callback/github"
    assert bridge.daemon_status["pid"] > 0
    assert done.status == "succeeded"
    assert (cancelled, again.status) == (False, "succeeded")
