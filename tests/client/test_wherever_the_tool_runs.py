"""A login wherever the tool runs: the auto rule, the reach check in a real Chromium, paste.

The provider is the control-plane double's own page (it consents at once, or denies),
so a real browser goes the whole way: trampoline, provider, and back to the daemon or
to LangSmith's hosted page.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from playwright.async_api import Browser, async_playwright

from tests.client.test_cli import AS_FROM_A_TERMINAL, spawn
from tests.client.test_login import consent, follow_trampoline, until
from tests.conftest import REPO, DaemonProcess, wait_ready
from tests.control_plane_double import ControlPlaneDouble
from tests.daemon.test_pages_in_chromium import CHROMIUM, CHROMIUM_ARGS

# A browser command that only records the address it was handed: the test opens it.
RECORDING_BROWSER = r"""
import sys
with open(sys.argv[2], "a") as handed:
    handed.write(sys.argv[1] + "\n")
"""


@pytest.fixture
async def daemon(daemon_process: Any, control_plane: ControlPlaneDouble) -> DaemonProcess:
    proc: DaemonProcess = daemon_process()
    info = await asyncio.to_thread(wait_ready, proc)
    control_plane.allow("github", f"{info['url']}/callback/github")
    control_plane.serve_provider("github")
    return proc


@pytest.fixture
def auto_env(cli_env: dict[str, str]) -> dict[str, str]:
    """A tool's environment that leaves the callback to the auto rule."""
    env = {**cli_env}
    env.pop("OAUTH_BRIDGE_CALLBACK", None)
    for name in ("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY", "CODESPACES", "BROWSER"):
        env.pop(name, None)
    return env


def recording(env: dict[str, str], tmp_path: Path) -> tuple[dict[str, str], Path]:
    script = tmp_path / "recording_browser.py"
    script.write_text(RECORDING_BROWSER, encoding="utf-8")
    handed = tmp_path / "handed.txt"
    return {**env, "BROWSER": f"{sys.executable} {script} %s {handed}"}, handed


async def handed_addresses(handed: Path, count: int) -> list[str]:
    def read() -> list[str] | None:
        lines = handed.read_text().split() if handed.exists() else []
        return lines if len(lines) >= count else None

    found: list[str] = await until(read, 30)
    return found


@pytest.fixture
def chromium_executable() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/test does)")
    return CHROMIUM


@pytest.fixture
async def real_browser(chromium_executable: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_executable, args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()


async def test_a_browser_that_cannot_reach_the_daemon_falls_back_to_the_hosted_page(
    auto_env: dict[str, str],
    daemon: DaemonProcess,
    control_plane: ControlPlaneDouble,
    real_browser: Browser,
    tmp_path: Path,
) -> None:
    env, handed = recording({**auto_env, "DISPLAY": ":99"}, tmp_path)
    port = daemon.info()["url"].rsplit(":", 1)[1]
    waiting = spawn(
        env, "login", "--provider", "github", "--scope", "repo", "--reach-timeout", "2", "--json"
    )
    # The remote browser: this machine's loopback is another machine's, out of its reach.
    page = await real_browser.new_page()
    await page.route(f"http://127.0.0.1:{port}/**", lambda route: route.abort())
    [trampoline] = await handed_addresses(handed, 1)
    with pytest.raises(Exception, match="ERR_FAILED"):
        await page.goto(trampoline)
    first_login_id = next(iter(control_plane.auth_requests))

    _, hosted = await handed_addresses(handed, 2)
    await page.goto(hosted)  # a private redirect file, then the provider, then LangSmith
    await page.wait_for_url(re.compile(".*/host-oauth-callback/github.*"))
    out, err = await asyncio.to_thread(waiting.communicate, timeout=30)

    assert waiting.returncode == 0, err
    login = json.loads(out)
    assert (login["status"], login["callback"]) == ("succeeded", "hosted")
    assert login["result"]["token"] == control_plane.tokens[("github", None)]
    assert "No browser reached oauth-bridge on this machine within 2s" in err
    assert trampoline.startswith(f"http://127.0.0.1:{port}/go/")
    assert hosted.startswith("file://")
    assert control_plane.auth_requests[first_login_id].status == "pending"  # never finished
    assert control_plane.calls == []  # no forward: LangSmith's page finished it
    assert "Not connected" not in await page.content()


async def test_a_browser_that_reaches_the_daemon_keeps_the_loopback_login(
    auto_env: dict[str, str],
    daemon: DaemonProcess,
    control_plane: ControlPlaneDouble,
    real_browser: Browser,
    tmp_path: Path,
) -> None:
    env, handed = recording({**auto_env, "DISPLAY": ":99"}, tmp_path)
    waiting = spawn(
        env, "login", "--provider", "github", "--scope", "repo", "--reach-timeout", "2", "--json"
    )
    [trampoline] = await handed_addresses(handed, 1)
    page = await real_browser.new_page()

    await page.goto(trampoline)
    out, err = await asyncio.to_thread(waiting.communicate, timeout=30)

    assert waiting.returncode == 0, err
    login = json.loads(out)
    assert (login["status"], login["callback"], login["browser_seen"]) == (
        "succeeded",
        "loopback",
        True,
    )
    assert "/result/" in page.url
    assert len(control_plane.calls) == 1  # forwarded by the daemon
    assert handed.read_text().split() == [trampoline]  # nothing else was opened


@pytest.mark.parametrize(
    ("place", "why"),
    [
        ({"SSH_CONNECTION": "127.0.0.1 50000 127.0.0.1 22"}, "SSH"),
        ({"CODESPACES": "true", "BROWSER": "true"}, "odespace"),
    ],
    ids=["ssh", "codespace"],
)
async def test_auto_picks_the_hosted_page_where_the_browser_is_elsewhere(
    auto_env: dict[str, str],
    daemon: DaemonProcess,
    control_plane: ControlPlaneDouble,
    place: dict[str, str],
    why: str,
) -> None:
    waiting = spawn(
        {**auto_env, **place}, "login", "--provider", "github", "--scope", "repo", "--json"
    )
    auth = await until(lambda: next(iter(control_plane.auth_requests.values()), None))
    # The user opens the printed address in a browser anywhere: the provider sends it to
    # LangSmith's own page, which finishes the login.
    address = f"{control_plane.url}/x?{urlencode({'redirect_uri': auth.redirect_uri, 'state': auth.state})}"
    await asyncio.to_thread(consent, address)
    out, err = await asyncio.to_thread(waiting.communicate, timeout=30)

    assert waiting.returncode == 0, err
    authenticate = next(c for c in control_plane.auth_calls if c.raw_path.endswith("authenticate"))
    assert "redirect_uri" not in authenticate.body
    assert json.loads(out)["callback"] == "hosted"
    assert "Using LangSmith's own sign-in page" in err
    assert why in err
    assert "open this in any browser, on any device" in err
    assert "does not report a denial back" in err


async def test_a_hosted_address_reaches_the_browser_through_a_private_file_only(
    cli_env: dict[str, str],
    daemon: DaemonProcess,
    control_plane: ControlPlaneDouble,
    tmp_path: Path,
) -> None:
    env, handed = recording({**cli_env, "DISPLAY": ":99"}, tmp_path)
    waiting = spawn(env, "login", "--provider", "github", "--scope", "repo", "--callback", "hosted")
    [address] = await handed_addresses(handed, 1)
    page = Path(urlsplit(address).path)
    mode = stat.S_IMODE((await asyncio.to_thread(page.stat)).st_mode)
    text = await asyncio.to_thread(page.read_text)
    waiting.send_signal(signal.SIGINT)
    await asyncio.to_thread(waiting.communicate, timeout=30)
    left = await asyncio.to_thread(page.exists)

    assert address.startswith("file://")
    assert "state=" not in address
    assert mode == 0o600
    assert page.parent == daemon.paths.runtime_dir
    assert "state=" in text  # the authorization URL is inside, for this user only
    assert left  # kept a while for a browser that reads it late (then swept)
    assert waiting.returncode == 13


def on_terminal(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start the CLI with stdin and stderr on a pseudo-terminal, as from a user's shell."""
    primary, secondary = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", AS_FROM_A_TERMINAL, *args],
        env={**env, "TERM": "xterm-256color"},
        cwd=REPO,
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=secondary,
    )
    os.close(secondary)
    return proc, primary


def read_until(primary: int, pattern: str, seen: bytearray) -> re.Match[str]:
    while (found := re.search(pattern, seen.decode(errors="replace"))) is None:
        chunk = os.read(primary, 4096)
        if not chunk:
            raise AssertionError(f"the terminal closed before {pattern!r}: {seen!r}")
        seen += chunk
    return found


async def test_an_address_pasted_into_the_waiting_login_completes_it(
    cli_env: dict[str, str], daemon: DaemonProcess, control_plane: ControlPlaneDouble
) -> None:
    proc, primary = on_terminal(
        {**cli_env, "SSH_CONNECTION": "127.0.0.1 50000 127.0.0.1 22"},
        "login",
        "--provider",
        "github",
        "--scope",
        "repo",
        "--callback",
        "loopback",
        "--no-open",
        "--json",
    )
    seen = bytearray()
    go = await asyncio.wait_for(
        asyncio.to_thread(read_until, primary, r"http://127\.0\.0\.1:\d+/go/[\w-]+", seen), 20
    )
    await asyncio.wait_for(asyncio.to_thread(read_until, primary, "paste the address", seen), 20)
    # The browser on the other machine went to the provider, whose redirect to
    # 127.0.0.1 failed there: the user copies the address it ended on, and pastes it.
    query = parse_qs(urlsplit(await asyncio.to_thread(follow_trampoline, go.group())).query)
    ended_on = (
        f"{query['redirect_uri'][0]}?{urlencode({'code': 'pasted', 'state': query['state'][0]})}"
    )
    os.write(primary, ended_on.encode() + b"\n")
    out, _ = await asyncio.to_thread(proc.communicate, timeout=30)
    os.close(primary)

    assert proc.returncode == 0, seen.decode(errors="replace")
    assert json.loads(out)["status"] == "succeeded"
    assert [c.body["code"] for c in control_plane.calls] == ["pasted"]
    # The address is a hyperlink of its own on a terminal that takes one (OSC 8).
    assert f"\x1b]8;;{go.group()}\x1b\\".encode() in bytes(seen)


async def test_a_denial_on_the_hosted_page_is_reported_as_the_terminal_promised(
    cli_env: dict[str, str], daemon: DaemonProcess, control_plane: ControlPlaneDouble
) -> None:
    control_plane.serve_provider("github", denies=True)
    proc, primary = on_terminal(
        cli_env,
        "login",
        "--provider",
        "github",
        "--scope",
        "repo",
        "--callback",
        "hosted",
        "--no-open",
    )
    seen = bytearray()
    await asyncio.wait_for(
        asyncio.to_thread(read_until, primary, "press Ctrl-C to end this wait", seen), 20
    )
    auth = next(iter(control_plane.auth_requests.values()))
    denied = await asyncio.to_thread(
        consent_page,
        f"{control_plane.url}/provider/authorize?{urlencode({'redirect_uri': auth.redirect_uri, 'state': auth.state})}",
    )
    await asyncio.wait_for(
        asyncio.to_thread(read_until, primary, "finish in LangSmith's page", seen), 20
    )
    proc.send_signal(signal.SIGINT)
    await asyncio.to_thread(proc.communicate, timeout=20)
    os.close(primary)

    text = seen.decode(errors="replace")
    assert "Not connected" in denied
    assert "a denial there is not reported back" in text
    assert proc.returncode == 13


def consent_page(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url) as page:  # noqa: S310  # a loopback URL of the double
        return str(page.read().decode())


def test_a_redirect_file_goes_once_read_or_stale(tmp_path: Path) -> None:
    import time

    from bridge.client.redirect_file import remove_if_read, sweep, write_redirect_file

    stale = write_redirect_file("https://provider.invalid/a?state=old", tmp_path)
    long_ago = time.time() - 3600
    os.utime(stale, (long_ago, long_ago))
    fresh = write_redirect_file("https://provider.invalid/a?state=new", tmp_path)  # sweeps
    remove_if_read(fresh, written=time.monotonic())  # exiting at once: left for the browser
    kept = fresh.exists()
    remove_if_read(fresh, written=time.monotonic() - 60)  # read long enough ago: removed
    sweep(tmp_path)

    assert not stale.exists()
    assert kept
    assert not fresh.exists()
